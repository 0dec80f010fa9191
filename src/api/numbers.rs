//! Integer fields of bodies and query strings, read leniently: `17830`, `17830.0` and, in a
//! query string, `"17830"` or `"17830.0"` are the same number.
//!
//! JSON Schema counts `17830.0` as an integer, and clients in languages without a separate
//! integer type (JavaScript, or Python after arithmetic) send it. So every integer field of
//! the API takes an integral float; a fraction (`1.5`) or a value out of the field's range is
//! still refused, and so is a JSON string (`"17830"`) in a body. Use
//! `#[serde(default, deserialize_with = "numbers::option")]` on an `Option<integer>` body field,
//! `numbers::required` on a plain one, and `numbers::query_option` in query parameters.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// An optional integer field (absent or `null` is `None`).
pub fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    deserializer.deserialize_option(OptionVisitor::<T, false>(PhantomData))
}

/// A required integer field.
pub fn required<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    deserializer.deserialize_any(IntegerVisitor::<T, false>(PhantomData))
}

/// An optional integer query parameter: query strings carry text, so `"17830"` is read too.
pub fn query_option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    deserializer.deserialize_option(OptionVisitor::<T, true>(PhantomData))
}

/// `TEXT`: whether the number may come as text (query strings), or must be a JSON number.
struct OptionVisitor<T, const TEXT: bool>(PhantomData<T>);

impl<'de, T: TryFrom<i128>, const TEXT: bool> Visitor<'de> for OptionVisitor<T, TEXT> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer
            .deserialize_any(IntegerVisitor::<T, TEXT>(PhantomData))
            .map(Some)
    }
}

struct IntegerVisitor<T, const TEXT: bool>(PhantomData<T>);

impl<T: TryFrom<i128>, const TEXT: bool> IntegerVisitor<T, TEXT> {
    fn fit<E: de::Error>(value: i128) -> Result<T, E> {
        T::try_from(value).map_err(|_| E::custom(format!("{value} is out of range")))
    }
}

/// The integer a float stands for, if it has no fraction (and is not absurdly large).
fn integral(value: f64) -> Option<i128> {
    // 2^64 bounds every integer type the API uses; past it a float is not a count of anything.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    (value.is_finite() && value.fract() == 0.0 && value.abs() < LIMIT).then_some(value as i128)
}

impl<'de, T: TryFrom<i128>, const TEXT: bool> Visitor<'de> for IntegerVisitor<T, TEXT> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        Self::fit(i128::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Self::fit(i128::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        match integral(value) {
            Some(value) => Self::fit(value),
            None => Err(E::invalid_value(de::Unexpected::Float(value), &self)),
        }
    }

    /// Query strings carry text; a JSON body must send a number.
    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        if !TEXT {
            return Err(E::invalid_type(de::Unexpected::Str(text), &self));
        }
        let value = match text.parse::<i128>() {
            Ok(value) => Some(value),
            // Only plain decimal text: `inf`, `NaN` and `1e3` are not numbers a client means here.
            Err(_)
                if text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.".contains(&b)) =>
            {
                text.parse::<f64>().ok().and_then(integral)
            }
            Err(_) => None,
        };
        match value {
            Some(value) => Self::fit(value),
            None => Err(E::invalid_value(de::Unexpected::Str(text), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::option")]
        small: Option<u32>,
        #[serde(default, deserialize_with = "super::option")]
        signed: Option<i64>,
    }

    fn body(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integral_floats_are_integers() {
        let parsed = body(r#"{"small": 17830.0, "signed": -5.0}"#).unwrap();
        assert_eq!((parsed.small, parsed.signed), (Some(17830), Some(-5)));
        let parsed = body(r#"{"small": 7, "signed": null}"#).unwrap();
        assert_eq!((parsed.small, parsed.signed), (Some(7), None));
        let parsed = body("{}").unwrap();
        assert_eq!((parsed.small, parsed.signed), (None, None));
    }

    #[test]
    fn fractions_strings_and_out_of_range_values_are_refused() {
        for bad in [
            r#"{"small": 1.5}"#,
            r#"{"small": -1}"#,
            r#"{"small": -1.0}"#,
            r#"{"small": 4294967296}"#,
            r#"{"small": 1e300}"#,
            r#"{"small": "7"}"#,
            r#"{"small": true}"#,
        ] {
            assert!(body(bad).is_err(), "{bad}");
        }
    }

    #[derive(Debug, Deserialize)]
    struct Query {
        #[serde(default, deserialize_with = "super::query_option")]
        limit: Option<u32>,
    }

    #[test]
    fn query_strings_take_the_same_numbers() {
        let parse = |query: &str| {
            let uri: axum::http::Uri = format!("/x?{query}").parse().unwrap();
            axum::extract::Query::<Query>::try_from_uri(&uri).map(|q| q.0.limit)
        };
        assert_eq!(parse("limit=10").unwrap(), Some(10));
        assert_eq!(parse("limit=10.0").unwrap(), Some(10));
        for bad in [
            "limit=1.5",
            "limit=",
            "limit=inf",
            "limit=1e3",
            "limit=x",
            "limit=-1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
