-- mart_satisfaction: citizens' ratings (好差评, 1..5) per service item, region, channel, month.
-- service_item_code, region_code, channel
-- month              year * 100 + month of submitted_at
-- applications       applications submitted
-- rated              applications with a rating
-- avg_rating         mean rating
-- satisfied_share    share of ratings 4 or 5 (好评率)
-- dissatisfied_share share of ratings 1 or 2 (差评率)
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
