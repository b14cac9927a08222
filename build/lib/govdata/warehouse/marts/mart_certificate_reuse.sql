-- mart_certificate_reuse: certificates issued once and reused in later applications (一证通用).
-- certificate_type       code (standards/codes/certificate_type.csv)
-- issuer                 issuing department
-- issued                 certificates in the certificate library
-- reused_certificates    certificates presented in at least one application
-- reuse_applications     applications presenting one of these certificates
-- reuse_share            reused_certificates / issued
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
