-- mart_certificate_reuse: certificates issued once and reused in later applications (一证通用).
-- Columns, their meaning and data tests: mart_certificate_reuse.yml (its contract, checked after every refresh).
WITH presented AS (
    SELECT certificate_no, COUNT(*) AS applications
    FROM fact_application
    WHERE certificate_no IS NOT NULL
    GROUP BY certificate_no
),
certs AS (
    SELECT DISTINCT certificate_no, certificate_type, issuer FROM fact_certificate WHERE certificate_no IS NOT NULL
)
SELECT c.certificate_type,
       c.issuer,
       COUNT(*) AS issued,
       COUNT(p.certificate_no) AS reused_certificates,
       COALESCE(SUM(p.applications), 0) AS reuse_applications,
       CAST(COUNT(p.certificate_no) AS DOUBLE PRECISION) / COUNT(*) AS reuse_share
FROM certs c
LEFT JOIN presented p ON p.certificate_no = c.certificate_no
GROUP BY c.certificate_type, c.issuer
