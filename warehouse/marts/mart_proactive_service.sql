-- mart_proactive_service: whom to serve before they ask (主动服务), relative to CURRENT_DATE.
-- Retirement: statutory base ages, men 60 and women 55 (sex codes 1 / 2, GB/T 2261.1), reached
-- during next calendar month. The 2025 gradual-increase schedule is not applied here.
-- Columns, their meaning and data tests: mart_proactive_service.yml (its contract, checked after every refresh).
SELECT 'certificate_expiry' AS reason,
       CASE WHEN expiry_date < CURRENT_DATE + 30 THEN 30 ELSE 90 END AS window_days,
       holder_token AS token,
       holder_person_id AS person_id,
       holder_enterprise_id AS enterprise_id,
       certificate_no,
       certificate_type,
       issuer,
       expiry_date AS due_date,
       CAST(expiry_date - CURRENT_DATE AS INTEGER) AS days_left
FROM fact_certificate
WHERE expiry_date >= CURRENT_DATE
  AND expiry_date < CURRENT_DATE + 90
  AND (status IS NULL OR status = 'valid')
UNION ALL
SELECT 'retirement' AS reason,
       NULL AS window_days,
       p.person_token AS token,
       p.person_id,
       NULL AS enterprise_id,
       NULL AS certificate_no,
       NULL AS certificate_type,
       NULL AS issuer,
       CAST(p.birth_date + CASE WHEN p.sex = '1' THEN INTERVAL '60 years' ELSE INTERVAL '55 years' END AS DATE) AS due_date,
       CAST(CAST(p.birth_date + CASE WHEN p.sex = '1' THEN INTERVAL '60 years' ELSE INTERVAL '55 years' END AS DATE)
            - CURRENT_DATE AS INTEGER) AS days_left
FROM dim_person p
WHERE p.sex IN ('1', '2')
  AND p.birth_date IS NOT NULL
  AND CAST(EXTRACT(YEAR FROM p.birth_date) AS INTEGER) + CASE WHEN p.sex = '1' THEN 60 ELSE 55 END
      = CAST(EXTRACT(YEAR FROM CAST(CURRENT_DATE + INTERVAL '1 month' AS DATE)) AS INTEGER)
  AND CAST(EXTRACT(MONTH FROM p.birth_date) AS INTEGER)
      = CAST(EXTRACT(MONTH FROM CAST(CURRENT_DATE + INTERVAL '1 month' AS DATE)) AS INTEGER)
