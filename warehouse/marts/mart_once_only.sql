-- mart_once_only: "collect once, reuse everywhere" (一次采集、多方复用) per source system.
-- Columns, their meaning and data tests: mart_once_only.yml (its contract, checked after every refresh).
WITH xref AS (
    SELECT 'person' AS entity, source_system, person_id AS master_id FROM xref_person
    UNION ALL
    SELECT 'enterprise' AS entity, source_system, enterprise_id AS master_id FROM xref_enterprise
),
sources_per_entity AS (
    SELECT entity, master_id, COUNT(DISTINCT source_system) AS n_sources FROM xref GROUP BY entity, master_id
)
SELECT x.entity,
       x.source_system,
       COUNT(*) AS records,
       COUNT(DISTINCT x.master_id) AS entities,
       COUNT(DISTINCT CASE WHEN s.n_sources > 1 THEN x.master_id END) AS shared_entities,
       CAST(COUNT(DISTINCT CASE WHEN s.n_sources > 1 THEN x.master_id END) AS DOUBLE PRECISION)
           / COUNT(DISTINCT x.master_id) AS shared_share
FROM xref x
JOIN sources_per_entity s ON s.entity = x.entity AND s.master_id = x.master_id
GROUP BY x.entity, x.source_system
