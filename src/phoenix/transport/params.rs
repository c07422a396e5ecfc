//! Connect params: query strings parsed with Plug's nested-query rules.
//!
//! `a=1` → `{"a":"1"}`; `a[b]=c` → `{"a":{"b":"c"}}`; `a[]=1&a[]=2` → `{"a":["1","2"]}`;
//! `+` is a space and `%XX` is decoded. Every value is a string. Later keys win on conflict.

use serde_json::{Map, Value};

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `a[b][]` into `["a", "b", ""]` (an empty segment means "append to a list").
fn key_path(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_owned()];
    };
    if open == 0 {
        return vec![key.to_owned()];
    }
    let mut path = vec![key[..open].to_owned()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            // Unbalanced bracket: Plug keeps the remainder as part of the last key.
            if let Some(last) = path.last_mut() {
                last.push_str(rest);
            }
            return path;
        };
        path.push(stripped[..close].to_owned());
        rest = &stripped[close + 1..];
    }
    path
}

fn insert(target: &mut Value, path: &[String], value: String) {
    let Some((head, tail)) = path.split_first() else {
        return;
    };
    if head.is_empty() {
        // List segment.
        if !target.is_array() {
            *target = Value::Array(Vec::new());
        }
        let Value::Array(list) = target else { return };
        if tail.is_empty() {
            list.push(Value::String(value));
            return;
        }
        // `a[][b]=1`: add to the last map unless it already has that key (Plug/Rack rule).
        let needs_new = match list.last() {
            Some(Value::Object(m)) => tail.first().is_none_or(|k| m.contains_key(k)),
            _ => true,
        };
        if needs_new {
            list.push(Value::Object(Map::new()));
        }
        if let Some(last) = list.last_mut() {
            insert(last, tail, value);
        }
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return };
    if tail.is_empty() {
        map.insert(head.clone(), Value::String(value));
    } else {
        let child = map.entry(head.clone()).or_insert(Value::Null);
        insert(child, tail, value);
    }
}

/// Parses a raw query string into a JSON object of params.
pub fn parse_query(query: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k);
        if key.is_empty() {
            continue;
        }
        insert(&mut root, &key_path(&key), percent_decode(v));
    }
    root
}

#[cfg(test)]
mod tests {
    use super::parse_query;
    use serde_json::json;

    #[test]
    fn flat_params_are_strings() {
        assert_eq!(
            parse_query("user_id=1001&vsn=2.0.0"),
            json!({"user_id":"1001","vsn":"2.0.0"})
        );
    }

    #[test]
    fn nested_maps_and_lists_follow_plug() {
        assert_eq!(
            parse_query("user%5Bid%5D=7&user[name]=a+b"),
            json!({"user":{"id":"7","name":"a b"}})
        );
        assert_eq!(parse_query("a[]=1&a[]=2"), json!({"a":["1","2"]}));
        assert_eq!(
            parse_query("a[][x]=1&a[][y]=2&a[][x]=3"),
            json!({"a":[{"x":"1","y":"2"},{"x":"3"}]})
        );
        assert_eq!(parse_query("vsn[]=2.0.0"), json!({"vsn":["2.0.0"]}));
    }

    #[test]
    fn odd_input_does_not_panic() {
        assert_eq!(
            parse_query("%&=&a=%zz&b=%4"),
            json!({"%":"","a":"%zz","b":"%4"})
        );
        assert_eq!(parse_query("a[b=1"), json!({"a[b":"1"}));
    }
}
