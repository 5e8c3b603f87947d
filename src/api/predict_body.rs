//! The `/predict` body, `{"instances": [...], "ids": [...]}`, read in one pass straight into raw records, with
//! no JSON tree built: each instance is read once, where it lies in the body.
//!
//! Shape errors are 422, value errors 400. A body that is not valid JSON (or holds a number beyond `f64`) is
//! parsed again by [`parse_json`] on the way out, only to name the path of the fault.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::body::{parse_json, unknown_key};
use super::error::ApiError;
use crate::preprocess::{fail, refuse_json_types, InstanceSeed, KeySeed, Pipeline, RecordBatch};

/// A checked `/predict` body: raw records, and the client's ids (one per record) if it sent any.
#[derive(Debug)]
pub struct PredictRequest {
    pub batch: RecordBatch,
    pub ids: Option<Vec<Arc<str>>>,
}

impl PredictRequest {
    pub fn parse(body: &[u8], pipeline: &Pipeline, max_instances: usize) -> Result<PredictRequest, ApiError> {
        let mut refused = None;
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let visitor = BodyVisitor { pipeline, max_instances, refused: &mut refused };
        let result = deserializer.deserialize_any(visitor).and_then(|request| deserializer.end().map(|()| request));
        result.map_err(|error| match refused {
            Some(refusal) => refusal,
            None => match parse_json(body) {
                Err(named) => named,
                Ok(_) => ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {error}")),
            },
        })
    }
}

fn shape(field: &str, message: String) -> ApiError {
    ApiError::unprocessable("wrong_shape", message).with_field(field)
}

struct BodyVisitor<'a> {
    pipeline: &'a Pipeline,
    max_instances: usize,
    refused: &'a mut Option<ApiError>,
}

impl BodyVisitor<'_> {
    fn refuse<T, E: de::Error>(self, got: &'static str) -> Result<T, E> {
        fail(self.refused, shape("", format!("expected an object with \"instances\", got {got}")))
    }
}

impl<'de> Visitor<'de> for BodyVisitor<'_> {
    type Value = PredictRequest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with \"instances\"")
    }

    refuse_json_types!(bool, number, string, null, array);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PredictRequest, A::Error> {
        let BodyVisitor { pipeline, max_instances, refused } = self;
        let mut instances: Option<Instances> = None;
        let mut ids: Option<Vec<Arc<str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key.as_ref() {
                "instances" if instances.is_none() => {
                    let seed = InstancesSeed { pipeline, max_instances, refused: &mut *refused };
                    instances = Some(map.next_value_seed(seed)?);
                }
                "ids" if ids.is_none() => ids = map.next_value_seed(IdsSeed { refused: &mut *refused })?,
                "instances" | "ids" => return fail(refused, shape(&key, format!("\"{key}\" is given twice"))),
                other => {
                    let hint = "a request has \"instances\" and optional \"ids\"";
                    return fail(refused, unknown_key(other, "", hint));
                }
            }
        }
        let Some(Instances { batch, count }) = instances else {
            return fail(refused, shape("instances", "\"instances\" is required".into()));
        };
        if count == 0 {
            let error = ApiError::unprocessable("empty_instances", "\"instances\" must hold at least one instance");
            return fail(refused, error.with_field("instances"));
        }
        if count > max_instances {
            return fail(refused, ApiError::too_many("too_many_instances", "instances", count, max_instances));
        }
        if let Some(ids) = ids.as_ref().filter(|ids| ids.len() != count) {
            let message = format!("expected {count} ids (one per instance), got {}", ids.len());
            return fail(refused, shape("ids", message));
        }
        Ok(PredictRequest { batch, ids })
    }
}

struct Instances {
    batch: RecordBatch,
    /// Instances in the body: past `max_instances` they are counted, not parsed.
    count: usize,
}

struct InstancesSeed<'a> {
    pipeline: &'a Pipeline,
    max_instances: usize,
    refused: &'a mut Option<ApiError>,
}

impl InstancesSeed<'_> {
    fn refuse<T, E: de::Error>(self, got: &'static str) -> Result<T, E> {
        fail(self.refused, shape("instances", format!("expected an array of instances, got {got}")))
    }
}

impl<'de> DeserializeSeed<'de> for InstancesSeed<'_> {
    type Value = Instances;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Instances, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InstancesSeed<'_> {
    type Value = Instances;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of instances")
    }

    refuse_json_types!(bool, number, string, null, object);

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Instances, A::Error> {
        let InstancesSeed { pipeline, max_instances, refused } = self;
        let mut batch = RecordBatch::new(pipeline.features().len());
        let mut count = 0;
        while count < max_instances {
            let path = || format!("instances[{count}]");
            let mut record_refused = None;
            let seed = InstanceSeed { pipeline, path: &path, batch: &mut batch, refused: &mut record_refused };
            match items.next_element_seed(seed) {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(error) => match record_refused {
                    Some(record) => return fail(refused, record.into()),
                    // Not JSON, or a number beyond f64: the body is parsed again to name it.
                    None => return Err(error),
                },
            }
            count += 1;
        }
        while items.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(Instances { batch, count })
    }
}

/// `"ids"`: null, or an array of non-empty strings.
struct IdsSeed<'a> {
    refused: &'a mut Option<ApiError>,
}

impl IdsSeed<'_> {
    fn refuse<T, E: de::Error>(self, got: &'static str) -> Result<T, E> {
        fail(self.refused, shape("ids", format!("expected an array of strings, got {got}")))
    }
}

impl<'de> DeserializeSeed<'de> for IdsSeed<'_> {
    type Value = Option<Vec<Arc<str>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdsSeed<'_> {
    type Value = Option<Vec<Arc<str>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }

    refuse_json_types!(bool, number, string, object);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = items.next_element_seed(IdSeed { index: ids.len(), refused: &mut *self.refused })? {
            ids.push(id);
        }
        Ok(Some(ids))
    }
}

struct IdSeed<'a> {
    index: usize,
    refused: &'a mut Option<ApiError>,
}

impl IdSeed<'_> {
    fn refuse<T, E: de::Error>(self, got: &'static str) -> Result<T, E> {
        let field = format!("ids[{}]", self.index);
        let message = format!("{field}: expected a non-empty string, got {got}");
        fail(self.refused, ApiError::bad_request("wrong_type", message).with_field(field))
    }
}

impl<'de> DeserializeSeed<'de> for IdSeed<'_> {
    type Value = Arc<str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Arc<str>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdSeed<'_> {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-empty string")
    }

    refuse_json_types!(bool, number, null, array, object);

    fn visit_str<E: de::Error>(self, id: &str) -> Result<Arc<str>, E> {
        if id.is_empty() {
            return self.refuse("a string");
        }
        Ok(Arc::from(id))
    }
}
