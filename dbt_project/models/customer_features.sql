-- One row per customer: behavioural features for the churn model, computed as of a
-- fixed date (var as_of_date) so that a rebuild gives the same result any day. The var
-- reaches the SQL only as a checked date literal (macros/date_var.sql), never pasted.
with

params as (
    select {{ date_var('as_of_date') }} as as_of_date
),

customers as (
    select customer_id, signup_date, region, plan, age_band, churned
    from {{ ref('customers') }}
),

orders as (
    select o.customer_id, o.order_date, o.amount
    from {{ ref('orders') }} as o
    cross join params
    where o.order_date <= params.as_of_date
),

order_stats as (
    select
        customer_id,
        count(*) as order_count,
        sum(amount) as total_spend,
        max(order_date) as last_order_date
    from orders
    group by customer_id
)

select
    c.customer_id,
    c.region,
    c.plan,
    c.age_band,
    cast(date_diff('day', c.signup_date, p.as_of_date) as integer) as tenure_days,
    cast(coalesce(s.order_count, 0) as integer) as order_count,
    cast(coalesce(s.total_spend, 0) as double) as total_spend,
    cast(
        case when coalesce(s.order_count, 0) = 0 then 0
             else s.total_spend / s.order_count end
        as double
    ) as avg_order_value,
    cast(
        date_diff('day', coalesce(s.last_order_date, c.signup_date), p.as_of_date)
        as integer
    ) as days_since_last_order,
    c.churned
from customers as c
cross join params as p
left join order_stats as s on s.customer_id = c.customer_id
order by c.customer_id
