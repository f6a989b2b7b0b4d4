//! The one SQL text for searching audit lines, shared by both backends:
//! only the conditions a filter sets are in it, so each shape of search can
//! use its index (an `(? IS NULL OR col = ?)` form would defeat them).

use super::AuditFilter;

/// A value bound to the query, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Text(String),
    Int(i64),
}

/// `SELECT … ORDER BY id LIMIT …` for `filter`, with `placeholder(n)`
/// spelling the nth (1-based) parameter, and the values to bind.
pub fn query(columns: &str, filter: &AuditFilter, placeholder: fn(usize) -> String) -> (String, Vec<Bound>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut add = |condition: &str, value: Bound| {
        values.push(value);
        conditions.push(format!("{condition} {}", placeholder(values.len())));
    };
    let texts = [
        ("card_id =", &filter.card_id),
        ("acs_trans_id =", &filter.acs_trans_id),
        ("device_id =", &filter.device_id),
        ("actor =", &filter.actor),
        ("kind =", &filter.kind),
        ("outcome =", &filter.outcome),
    ];
    for (condition, value) in texts {
        if let Some(v) = value {
            add(condition, Bound::Text(v.clone()));
        }
    }
    let ints = [("at >=", filter.from), ("at <", filter.until), ("id >", filter.after_id)];
    for (condition, value) in ints {
        if let Some(v) = value {
            add(condition, Bound::Int(v));
        }
    }
    values.push(Bound::Int(i64::from(filter.limit.max(1))));
    let limit = placeholder(values.len());
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    (format!("SELECT {columns} FROM audit_events{filter} ORDER BY id LIMIT {limit}"), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_conditions_set_are_in_the_query() {
        let dollar = |n| format!("${n}");
        let (sql, values) = query("id", &AuditFilter { limit: 5, ..AuditFilter::default() }, dollar);
        assert_eq!(sql, "SELECT id FROM audit_events ORDER BY id LIMIT $1");
        assert_eq!(values, [Bound::Int(5)]);
        let filter = AuditFilter {
            card_id: Some("c".into()),
            outcome: Some("ok".into()),
            until: Some(9),
            after_id: Some(3),
            limit: 0,
            ..AuditFilter::default()
        };
        let (sql, values) = query("id", &filter, |n| format!("?{n}"));
        assert_eq!(
            sql,
            "SELECT id FROM audit_events WHERE card_id = ?1 AND outcome = ?2 AND at < ?3 AND id > ?4 ORDER BY id LIMIT ?5"
        );
        assert_eq!(
            values,
            [Bound::Text("c".into()), Bound::Text("ok".into()), Bound::Int(9), Bound::Int(3), Bound::Int(1)]
        );
    }
}
