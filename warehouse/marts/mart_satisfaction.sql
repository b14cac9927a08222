-- mart_satisfaction: citizens' ratings (好差评, 1..5) per service item, region, channel, month.
-- Columns, their meaning and data tests: mart_satisfaction.yml (its contract, checked after every refresh).
SELECT service_item_code,
       region_code,
       channel,
       CAST(EXTRACT(YEAR FROM submitted_at) AS INTEGER) * 100 + CAST(EXTRACT(MONTH FROM submitted_at) AS INTEGER) AS month,
       COUNT(*) AS applications,
       COUNT(rating) AS rated,
       CAST(AVG(rating) AS DOUBLE PRECISION) AS avg_rating,
       CAST(SUM(CASE WHEN rating >= 4 THEN 1 ELSE 0 END) AS DOUBLE PRECISION) / NULLIF(COUNT(rating), 0) AS satisfied_share,
       CAST(SUM(CASE WHEN rating <= 2 THEN 1 ELSE 0 END) AS DOUBLE PRECISION) / NULLIF(COUNT(rating), 0) AS dissatisfied_share
FROM fact_application
WHERE submitted_at IS NOT NULL
GROUP BY service_item_code, region_code, channel,
         CAST(EXTRACT(YEAR FROM submitted_at) AS INTEGER) * 100 + CAST(EXTRACT(MONTH FROM submitted_at) AS INTEGER)
