//! Small text helpers for messages.

/// `a, b, c`, or `none` when there is nothing to list.
pub fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_join_with_commas_or_say_none() {
        assert_eq!(list_or_none(&[]), "none");
        assert_eq!(list_or_none(&["a", "b"]), "a, b");
    }
}
