-- @@name@@: a data product. Its team, gates, budget and policy are in @@name@@.yml (`meta.ud`).
select
    id,
    @@columns@@,
    @@label@@
from {{ ref('@@name@@_source') }}
where id is not null
