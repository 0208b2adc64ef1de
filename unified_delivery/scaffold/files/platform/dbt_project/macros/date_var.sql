{#-
    A dbt var as a SQL date literal, `date 'YYYY-MM-DD'`. The value is checked here, in Jinja,
    before any SQL exists: whatever reaches the var (a check before dbt bypassed, a typo in
    dbt_project.yml), nothing but digits and dashes can reach the warehouse. The refusal names
    the var, never its value.
-#}
{% macro date_var(name) -%}
    {%- set value = var(name) | string -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " is not a date (YYYY-MM-DD)") }}
    {%- endif -%}
    date '{{ value }}'
{%- endmacro %}
