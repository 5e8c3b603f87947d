//! Arbitrary records (any `f64` including NaN and infinities, any text, nulls, absent keys, booleans) written
//! as JSON objects, JSON arrays or CSV fields, through a bundled pipeline: the records inferd's parsers accept
//! become finite rows, or are refused.
#![no_main]

use std::sync::LazyLock;

use inferd::preprocess::{Pipeline, RecordBatch};
use inferd::repository::manifest::{FeatureSpec, FeatureType};
use inferd_fuzz::{add_record, assert_holds, bundled_pipelines, check_rows, repository_root, Field, Form};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

static PIPELINES: LazyLock<Vec<Pipeline>> =
    LazyLock::new(|| bundled_pipelines(&repository_root()).into_iter().map(|(_, _, pipeline)| pipeline).collect());

/// Most records in one batch.
const MAX_RECORDS: usize = 32;

/// Mostly a value of the feature's type (any `f64`, NaN and infinities included; a category by index), one in
/// eight anything at all; out of data, a zero or the first category.
fn field(u: &mut Unstructured, feature: &FeatureSpec) -> Result<Field> {
    if u.ratio(7, 8)? {
        return Ok(match feature.kind {
            FeatureType::Number => Field::Number(u.arbitrary()?),
            FeatureType::Category => Field::Category(u.arbitrary()?),
        });
    }
    Ok(match u.int_in_range(0..=5)? {
        0 => Field::Absent,
        1 => Field::Null,
        2 => Field::Number(u.arbitrary()?),
        3 => Field::Text(u.arbitrary()?),
        4 => Field::Category(u.arbitrary()?),
        _ => Field::Bool(u.arbitrary()?),
    })
}

fn form(u: &mut Unstructured) -> Result<Form> {
    Ok(match u.int_in_range(0..=2)? {
        0 => Form::Object,
        1 => Form::Array,
        _ => Form::Text,
    })
}

fn fuzz(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let pipeline = &PIPELINES[u.choose_index(PIPELINES.len())?];
    let width = pipeline.features().len();
    let mut batch = RecordBatch::new(width);
    for _ in 0..u.int_in_range(1..=MAX_RECORDS)? {
        let form = form(&mut u)?;
        let fields = pipeline.features().iter().map(|f| field(&mut u, f)).collect::<Result<Vec<Field>>>()?;
        // A refused record leaves the batch as it was.
        let _ = add_record(pipeline, &fields, form, &mut batch);
    }
    assert_holds(check_rows(pipeline, &batch));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = fuzz(data);
});
