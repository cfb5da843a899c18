//! Reading the JSON the daemon and the CLI answer with.

use serde_json::Value;

/// The string field `field` of every element of the array `list`, in order (panics, naming
/// the list, when it is not an array of objects with that string field).
pub fn strs<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|e| {
            e[field]
                .as_str()
                .unwrap_or_else(|| panic!("no string {field} in {e}"))
        })
        .collect()
}

/// The element of the array `list` whose field `field` is `value` (panics, showing the list,
/// when there is none).
pub fn find<'a>(list: &'a Value, field: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .find(|e| e[field] == value)
        .unwrap_or_else(|| panic!("no element with {field} {value:?} in {list:#}"))
}
