//! JSON records straight into a [`RecordBatch`]: one pass over the text with serde visitors, no intermediate
//! JSON tree, keys borrowed from the text where they hold no escapes, each value written into its feature's
//! slot. Errors name the offending field the way the rest of the API does (`instances[3].mean radius`).
//!
//! A visitor refuses a JSON type by recording a precise error in a slot its caller owns and aborting the
//! parse with a bare serde error; the caller reports the recorded error. A serde error with nothing recorded
//! is a syntax error (or a number beyond `f64`) in the text itself.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Pipeline, RawValue, RecordBatch, RecordError, RecordErrorKind};
use crate::repository::manifest::FeatureType;

/// Visitor methods refusing JSON types by name: each calls `self.refuse(got)` with the type as error messages
/// name it ("a boolean", "a number", "a string", "null", "an array", "an object").
macro_rules! refuse_json_types {
    (bool) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            self.refuse("a boolean")
        }
    };
    (number) => {
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            self.refuse("a number")
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            self.refuse("a number")
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            self.refuse("a number")
        }
    };
    (string) => {
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            self.refuse("a string")
        }
    };
    (null) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            self.refuse("null")
        }
    };
    (array) => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            self.refuse("an array")
        }
    };
    (object) => {
        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            self.refuse("an object")
        }
    };
    ($($kind:ident),+) => {
        $(refuse_json_types!($kind);)+
    };
}
pub(crate) use refuse_json_types;

/// Records `error` in `slot` and aborts the parse.
pub fn fail<T, E: de::Error, R>(slot: &mut Option<R>, error: R) -> Result<T, E> {
    *slot = Some(error);
    Err(E::custom("refused"))
}

/// An object key, borrowed from the text unless it had to be unescaped.
pub struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

/// Why JSON text did not become a record.
#[derive(Debug)]
pub enum InstanceError {
    /// Valid JSON that is not a valid record.
    Record(RecordError),
    /// Not valid JSON, or a number beyond `f64`'s range (JSON has no infinity).
    Json(serde_json::Error),
}

impl Pipeline {
    /// Parses one instance from its JSON text — an object by feature name, or an array in `[[features]]`
    /// order — and appends its raw values to `batch` (nothing on error). `path` names the instance in errors.
    pub fn parse_instance_json(
        &self,
        text: &str,
        path: &dyn Fn() -> String,
        batch: &mut RecordBatch,
    ) -> Result<(), InstanceError> {
        let start = batch.values.len();
        let mut refused = None;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let seed = InstanceSeed { pipeline: self, path, batch: &mut *batch, refused: &mut refused };
        let result = seed.deserialize(&mut deserializer).and_then(|()| deserializer.end());
        result.map_err(|error| {
            batch.values.truncate(start);
            match refused {
                Some(record) => InstanceError::Record(record),
                None => InstanceError::Json(error),
            }
        })
    }
}

/// One instance read from any JSON deserializer (an element of a larger body, say) into `batch`. On a
/// refusal the precise error is in `refused`; on any error `batch` may hold part of the instance.
pub struct InstanceSeed<'a> {
    pub pipeline: &'a Pipeline,
    /// Names the instance in errors.
    pub path: &'a dyn Fn() -> String,
    pub batch: &'a mut RecordBatch,
    pub refused: &'a mut Option<RecordError>,
}

impl<'de> DeserializeSeed<'de> for InstanceSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let InstanceSeed { pipeline, path, batch, refused } = self;
        deserializer.deserialize_any(InstanceVisitor { pipeline, path, batch, refused })
    }
}

struct InstanceVisitor<'a> {
    pipeline: &'a Pipeline,
    path: &'a dyn Fn() -> String,
    batch: &'a mut RecordBatch,
    refused: &'a mut Option<RecordError>,
}

impl InstanceVisitor<'_> {
    fn refuse<T, E: de::Error>(self, got: &'static str) -> Result<T, E> {
        let field = (self.path)();
        fail(self.refused, RecordError { field, kind: RecordErrorKind::NotAnInstance { got } })
    }
}

impl<'de> Visitor<'de> for InstanceVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of named features or an array of values")
    }

    refuse_json_types!(bool, number, string, null);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let InstanceVisitor { pipeline, path, batch, refused } = self;
        let start = batch.values.len();
        batch.values.resize(start + pipeline.features.len(), RawValue::Missing);
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let field = || format!("{}.{name}", path());
            let Some(&i) = pipeline.index.get(name.as_ref()) else {
                return fail(refused, RecordError { field: field(), kind: RecordErrorKind::Unknown });
            };
            let seed = ValueSeed { kind: pipeline.features[i].kind, field: &field, refused: &mut *refused };
            batch.values[start + i] = map.next_value_seed(seed)?;
        }
        let features = &pipeline.features;
        pipeline
            .check_required(&batch.values[start..], |i| format!("{}.{}", path(), features[i].name))
            .or_else(|error| fail(refused, error))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let InstanceVisitor { pipeline, path, batch, refused } = self;
        let start = batch.values.len();
        let expected = pipeline.features.len();
        let mut got = 0;
        while got < expected {
            let field = || format!("{}[{got}]", path());
            let seed = ValueSeed { kind: pipeline.features[got].kind, field: &field, refused: &mut *refused };
            match items.next_element_seed(seed)? {
                Some(value) => batch.values.push(value),
                None => break,
            }
            got += 1;
        }
        while items.next_element::<IgnoredAny>()?.is_some() {
            got += 1;
        }
        if got != expected {
            let kind = RecordErrorKind::WrongLength { expected, got };
            return fail(refused, RecordError { field: path(), kind });
        }
        pipeline.check_required(&batch.values[start..], |i| format!("{}[{i}]", path())).or_else(|e| fail(refused, e))
    }
}

/// One feature's value: a number or null for a number feature, a string or null for a category.
struct ValueSeed<'a> {
    kind: FeatureType,
    field: &'a dyn Fn() -> String,
    refused: &'a mut Option<RecordError>,
}

impl ValueSeed<'_> {
    fn refuse<T, E: de::Error>(self, got: &'static str) -> Result<T, E> {
        let expected = match self.kind {
            FeatureType::Number => "a number",
            FeatureType::Category => "a string (a category)",
        };
        fail(self.refused, RecordError { field: (self.field)(), kind: RecordErrorKind::WrongType { expected, got } })
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = RawValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawValue, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a feature value")
    }

    refuse_json_types!(bool, array, object);

    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Missing)
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<RawValue, E> {
        match self.kind {
            // serde_json refuses numbers beyond f64's range, so `x` is finite.
            FeatureType::Number => Ok(RawValue::Number(x)),
            FeatureType::Category => self.refuse("a number"),
        }
    }

    fn visit_i64<E: de::Error>(self, x: i64) -> Result<RawValue, E> {
        self.visit_f64(x as f64)
    }

    fn visit_u64<E: de::Error>(self, x: u64) -> Result<RawValue, E> {
        self.visit_f64(x as f64)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<RawValue, E> {
        match self.kind {
            FeatureType::Category => Ok(RawValue::Category(Arc::from(text))),
            FeatureType::Number => self.refuse("a string"),
        }
    }
}
