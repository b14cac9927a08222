-- mart_sharing_use: use of the shared data through the verification / prefill service
-- (信息资源使用; 一次提交、避免重复提交), from the request log share_log.
-- One row per client, resource and purpose that called the service, plus one row per service
-- item whose applications no call served (client_id, resource NULL; calls 0).
-- Columns, their meaning and data tests: mart_sharing_use.yml (its contract, checked after every refresh).
WITH calls AS (
    SELECT client_id, department, purpose, outcome, logged_at,
           unnest(string_to_array(COALESCE(NULLIF(resources, ''), '(none)'), ',')) AS resource
    FROM share_log
),
answered AS (
    SELECT application_no, subject_token, purpose FROM share_log
    WHERE outcome = 'ok' AND endpoint IN ('verify', 'prefill')
),
served AS (
    SELECT a.source_system, a.source_record_id
    FROM fact_application a JOIN answered l ON l.application_no = a.application_no
    UNION
    SELECT a.source_system, a.source_record_id
    FROM fact_application a
    JOIN answered l ON l.subject_token = a.applicant_token AND l.purpose = a.service_item_code
),
per_item AS (
    SELECT a.service_item_code,
           COUNT(*) AS applications,
           COUNT(s.source_record_id) AS applications_served
    FROM fact_application a
    LEFT JOIN served s ON s.source_system = a.source_system AND s.source_record_id = a.source_record_id
    WHERE a.service_item_code IS NOT NULL
    GROUP BY a.service_item_code
)
SELECT c.client_id,
       c.department,
       c.resource,
       c.purpose,
       COUNT(*) AS calls,
       COUNT(CASE WHEN c.outcome = 'ok' THEN 1 END) AS answered,
       COUNT(CASE WHEN c.outcome <> 'ok' THEN 1 END) AS refused,
       MIN(c.logged_at) AS first_call,
       MAX(c.logged_at) AS last_call,
       p.applications,
       p.applications_served,
       CAST(p.applications_served AS DOUBLE PRECISION) / NULLIF(p.applications, 0) AS served_share
FROM calls c
LEFT JOIN per_item p ON p.service_item_code = c.purpose
GROUP BY c.client_id, c.department, c.resource, c.purpose, p.applications, p.applications_served
UNION ALL
SELECT NULL, NULL, NULL, p.service_item_code, 0, 0, 0, NULL, NULL, p.applications, p.applications_served,
       CAST(p.applications_served AS DOUBLE PRECISION) / NULLIF(p.applications, 0)
FROM per_item p
WHERE NOT EXISTS (SELECT 1 FROM share_log l WHERE l.purpose = p.service_item_code)
