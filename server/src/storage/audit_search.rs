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

/// The lines about card `card` (a placeholder): those with no purchase
/// through the by-card index (which holds only them), those about a purchase
/// through the card's purchases — every line about a purchase carries the
/// purchase's card, so the two together are the lines whose `card_id` is
/// the card. Appending a line about a purchase (every AReq, every ending)
/// thus writes no by-card index page.
fn about_card(card: &str) -> String {
    format!(
        "id IN (SELECT id FROM audit_events WHERE card_id = {card} AND acs_trans_id IS NULL \
         UNION ALL SELECT a.id FROM authentications p JOIN audit_events a ON a.acs_trans_id = p.acs_trans_id \
         WHERE p.card_id = {card} AND a.card_id = {card})"
    )
}

/// `SELECT … ORDER BY id LIMIT …` for `filter`, with `placeholder(n)`
/// spelling the nth (1-based) parameter, and the values to bind.
pub fn query(columns: &str, filter: &AuditFilter, placeholder: fn(usize) -> String) -> (String, Vec<Bound>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    let mut bind = |value: Bound| {
        values.push(value);
        placeholder(values.len())
    };
    if let Some(card) = &filter.card_id {
        conditions.push(about_card(&bind(Bound::Text(card.clone()))));
    }
    let texts = [
        ("acs_trans_id =", &filter.acs_trans_id),
        ("device_id =", &filter.device_id),
        ("actor =", &filter.actor),
        ("kind =", &filter.kind),
        ("outcome =", &filter.outcome),
    ];
    for (condition, value) in texts {
        if let Some(v) = value {
            conditions.push(format!("{condition} {}", bind(Bound::Text(v.clone()))));
        }
    }
    let ints = [("at >=", filter.from), ("at <", filter.until), ("id >", filter.after_id)];
    for (condition, value) in ints {
        if let Some(v) = value {
            conditions.push(format!("{condition} {}", bind(Bound::Int(v))));
        }
    }
    let limit = bind(Bound::Int(i64::from(filter.limit.max(1))));
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
            format!(
                "SELECT id FROM audit_events WHERE {} AND outcome = ?2 AND at < ?3 AND id > ?4 ORDER BY id LIMIT ?5",
                about_card("?1")
            )
        );
        assert_eq!(about_card("?1").matches("= ?1").count(), 3, "one value bound, read three times");
        assert_eq!(
            values,
            [Bound::Text("c".into()), Bound::Text("ok".into()), Bound::Int(9), Bound::Int(3), Bound::Int(1)]
        );
    }
}
