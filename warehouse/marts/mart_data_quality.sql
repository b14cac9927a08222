-- mart_data_quality: data-quality outcome per run and source system.
-- Columns, their meaning and data tests: mart_data_quality.yml (its contract, checked after every refresh).
WITH dq AS (
    SELECT run_id, source_system,
           COUNT(*) AS checks,
           SUM(CASE WHEN success THEN 0 ELSE 1 END) AS failed_checks,
           SUM(CASE WHEN NOT success AND severity = 'critical' THEN 1 ELSE 0 END) AS critical_failures,
           SUM(COALESCE(unexpected_count, 0)) AS unexpected_values
    FROM dq_result
    GROUP BY run_id, source_system
),
q AS (
    SELECT run_id, source_system,
           COUNT(DISTINCT CASE WHEN row_rejected THEN source_record_id END) AS rejected_rows,
           SUM(CASE WHEN row_rejected THEN 0 ELSE 1 END) AS quarantined_values
    FROM quarantine
    GROUP BY run_id, source_system
),
k AS (
    SELECT run_id, source_system FROM dq UNION SELECT run_id, source_system FROM q
)
SELECT k.run_id,
       k.source_system,
       COALESCE(dq.checks, 0) AS checks,
       COALESCE(dq.failed_checks, 0) AS failed_checks,
       COALESCE(dq.critical_failures, 0) AS critical_failures,
       CAST(dq.checks - dq.failed_checks AS DOUBLE PRECISION) / NULLIF(dq.checks, 0) AS check_success_share,
       COALESCE(dq.unexpected_values, 0) AS unexpected_values,
       COALESCE(q.rejected_rows, 0) AS rejected_rows,
       COALESCE(q.quarantined_values, 0) AS quarantined_values
FROM k
LEFT JOIN dq ON dq.run_id = k.run_id AND dq.source_system = k.source_system
LEFT JOIN q ON q.run_id = k.run_id AND q.source_system = k.source_system
