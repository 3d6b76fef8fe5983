//! Integers as JSON Schema counts them. The API's schemas say `type: integer`, and JSON Schema
//! (draft 6 on, so OpenAPI 3.1) counts `9196.0` as an integer: a number whose fraction is zero.
//! serde_json's `u64` refuses it ("expected u64"), so a request a client built from the spec
//! would be refused. These deserializers take both spellings and nothing else: `9196.5`, `1e400`,
//! negatives and strings stay refused.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// A non-negative integer written `9196` or `9196.0` (up to 2^53 when written with a fraction:
/// beyond that a JSON number is no longer exact in the f64 every client parses it into).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Whole(u64);

const MAX_EXACT_F64: f64 = 9_007_199_254_740_992.0; // 2^53

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                Ok(Whole(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                u64::try_from(v)
                    .map(Whole)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
                if v.fract() == 0.0 && (0.0..=MAX_EXACT_F64).contains(&v) {
                    Ok(Whole(v as u64))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn narrow<T: TryFrom<u64>, E: de::Error>(v: u64) -> Result<T, E> {
    T::try_from(v).map_err(|_| {
        E::invalid_value(
            de::Unexpected::Unsigned(v),
            &"an integer in the type's range",
        )
    })
}

/// `#[serde(deserialize_with = "json_integer::u64")]`
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Whole::deserialize(d).map(|w| w.0)
}

/// `#[serde(deserialize_with = "json_integer::u32")]`
pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    narrow(Whole::deserialize(d)?.0)
}

/// `#[serde(deserialize_with = "json_integer::u32_list")]`
pub fn u32_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    Vec::<Whole>::deserialize(d)?
        .into_iter()
        .map(|w| narrow(w.0))
        .collect()
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(deserialize_with = "super::u64")]
        size: u64,
        #[serde(deserialize_with = "super::u32_list", default)]
        parts: Vec<u32>,
    }

    fn size(json: &str) -> Result<u64, String> {
        serde_json::from_str::<Body>(&format!(r#"{{"size":{json}}}"#))
            .map(|b| b.size)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integral_numbers_in_either_spelling() {
        assert_eq!(size("9196"), Ok(9196));
        assert_eq!(size("9196.0"), Ok(9196));
        assert_eq!(size("9.196e3"), Ok(9196));
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("-0.0"), Ok(0));
        assert_eq!(size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn everything_else_refused() {
        for bad in [
            "9196.5", "-1", "-1.0", "1e400", "\"9196\"", "null", "true", "1e300",
        ] {
            assert!(size(bad).is_err(), "{bad} accepted");
        }
        let parts = |j: &str| {
            serde_json::from_str::<Body>(&format!(r#"{{"size":1,"parts":{j}}}"#)).map(|b| b.parts)
        };
        assert_eq!(parts("[1, 2.0, 3e0]").unwrap(), vec![1, 2, 3]);
        assert!(parts("[4294967296]").is_err());
        assert!(parts("[1.5]").is_err());
    }
}
