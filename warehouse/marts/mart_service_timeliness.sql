-- mart_service_timeliness: handling time against the legal limit, per service item, region,
-- channel and month of submission.
-- Columns, their meaning and data tests: mart_service_timeliness.yml (its contract, checked after every refresh).
SELECT service_item_code,
       region_code,
       channel,
       CAST(EXTRACT(YEAR FROM submitted_at) AS INTEGER) * 100 + CAST(EXTRACT(MONTH FROM submitted_at) AS INTEGER) AS month,
       COUNT(*) AS volume,
       COUNT(completed_at) AS completed,
       CAST(percentile_cont(0.5) WITHIN GROUP (ORDER BY working_days_taken) AS DOUBLE PRECISION) AS median_working_days,
       CAST(percentile_cont(0.9) WITHIN GROUP (ORDER BY working_days_taken) AS DOUBLE PRECISION) AS p90_working_days,
       CAST(SUM(CASE WHEN within_limit THEN 1 ELSE 0 END) AS DOUBLE PRECISION)
           / NULLIF(COUNT(within_limit), 0) AS within_limit_share,
       CAST(SUM(CASE WHEN online THEN 1 ELSE 0 END) AS DOUBLE PRECISION) / COUNT(*) AS online_share
FROM fact_application
WHERE submitted_at IS NOT NULL
GROUP BY service_item_code, region_code, channel,
         CAST(EXTRACT(YEAR FROM submitted_at) AS INTEGER) * 100 + CAST(EXTRACT(MONTH FROM submitted_at) AS INTEGER)
