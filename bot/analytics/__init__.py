"""Contact-centre analytics: KPIs, reports, Erlang C staffing, the review inbox."""
