//! Tensors of the Open Inference Protocol (KServe V2): datatypes, shapes, and element data given as JSON
//! (row-major, flat or nested) or as raw bytes by the binary tensor data extension (little-endian; BYTES
//! elements each a 4-byte little-endian length and the bytes).

use serde_json::Value;

/// A tensor datatype of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
    Bytes,
}

impl DataType {
    pub fn parse(name: &str) -> Option<DataType> {
        Some(match name {
            "BOOL" => DataType::Bool,
            "UINT8" => DataType::U8,
            "UINT16" => DataType::U16,
            "UINT32" => DataType::U32,
            "UINT64" => DataType::U64,
            "INT8" => DataType::I8,
            "INT16" => DataType::I16,
            "INT32" => DataType::I32,
            "INT64" => DataType::I64,
            "FP16" => DataType::F16,
            "FP32" => DataType::F32,
            "FP64" => DataType::F64,
            "BYTES" => DataType::Bytes,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Bytes per element in binary data (`None`: BYTES, length-prefixed).
    fn width(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => Some(1),
            DataType::U16 | DataType::I16 | DataType::F16 => Some(2),
            DataType::U32 | DataType::I32 | DataType::F32 => Some(4),
            DataType::U64 | DataType::I64 | DataType::F64 => Some(8),
            DataType::Bytes => None,
        }
    }

    pub fn is_numeric(self) -> bool {
        !matches!(self, DataType::Bool | DataType::Bytes)
    }

    fn is_integer(self) -> bool {
        self.is_numeric() && !matches!(self, DataType::F16 | DataType::F32 | DataType::F64)
    }
}

/// A tensor's elements, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    /// Every numeric datatype, widened to `f64` (exact for all but 64-bit integers beyond 2⁵³).
    Numbers(Vec<f64>),
    Bools(Vec<bool>),
    Bytes(Vec<Vec<u8>>),
}

impl Elements {
    pub fn len(&self) -> usize {
        match self {
            Elements::Numbers(v) => v.len(),
            Elements::Bools(v) => v.len(),
            Elements::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The number of elements a shape holds, or why the shape is not one.
pub fn element_count(shape: &[i64]) -> Result<usize, String> {
    shape.iter().try_fold(1usize, |count, &dim| {
        let dim = usize::try_from(dim).map_err(|_| format!("shape {shape:?} has a negative dimension"))?;
        count.checked_mul(dim).ok_or_else(|| format!("shape {shape:?} is too large"))
    })
}

/// Decodes JSON `data` (row-major, flat or nested arrays) of `datatype`.
pub fn from_json(data: &Value, datatype: DataType) -> Result<Elements, String> {
    let mut flat = Vec::new();
    flatten(data, &mut flat, 0)?;
    let wrong = |i: usize, want: &str| format!("element {i}: expected {want} for datatype {}", datatype.name());
    match datatype {
        DataType::Bool => flat
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_bool().ok_or_else(|| wrong(i, "true or false")))
            .collect::<Result<_, _>>()
            .map(Elements::Bools),
        DataType::Bytes => flat
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| wrong(i, "a string")))
            .collect::<Result<_, _>>()
            .map(Elements::Bytes),
        _ => flat
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                // `null` (written `NaN` by some clients) is a missing value.
                Value::Null if !datatype.is_integer() => Ok(f64::NAN),
                Value::Number(n) if datatype.is_integer() && !(n.is_i64() || n.is_u64()) => Err(wrong(i, "an integer")),
                Value::Number(n) => n.as_f64().ok_or_else(|| wrong(i, "a number")),
                _ => Err(wrong(i, "a number")),
            })
            .collect::<Result<_, _>>()
            .map(Elements::Numbers),
    }
}

/// Nested arrays deeper than this are refused rather than recursed into.
const MAX_DEPTH: usize = 32;

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>, depth: usize) -> Result<(), String> {
    match value {
        Value::Array(items) if depth < MAX_DEPTH => items.iter().try_for_each(|item| flatten(item, out, depth + 1)),
        Value::Array(_) => Err(format!("data is nested more than {MAX_DEPTH} arrays deep")),
        scalar => {
            out.push(scalar);
            Ok(())
        }
    }
}

/// Decodes `count` elements of `datatype` from binary tensor data.
pub fn from_binary(bytes: &[u8], datatype: DataType, count: usize) -> Result<Elements, String> {
    let Some(width) = datatype.width() else { return bytes_elements(bytes, count).map(Elements::Bytes) };
    if count.checked_mul(width) != Some(bytes.len()) {
        return Err(format!(
            "binary data of {} bytes does not hold {count} {} elements of {width} bytes",
            bytes.len(),
            datatype.name()
        ));
    }
    let chunks = bytes.chunks_exact(width);
    let le = |c: &[u8]| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        b
    };
    Ok(match datatype {
        DataType::Bool => Elements::Bools(bytes.iter().map(|b| *b != 0).collect()),
        DataType::U8 => Elements::Numbers(bytes.iter().map(|b| f64::from(*b)).collect()),
        DataType::I8 => Elements::Numbers(bytes.iter().map(|b| f64::from(*b as i8)).collect()),
        DataType::U16 => Elements::Numbers(chunks.map(|c| f64::from(u16::from_le_bytes([c[0], c[1]]))).collect()),
        DataType::I16 => Elements::Numbers(chunks.map(|c| f64::from(i16::from_le_bytes([c[0], c[1]]))).collect()),
        DataType::F16 => Elements::Numbers(chunks.map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect()),
        DataType::U32 => {
            Elements::Numbers(chunks.map(|c| f64::from(u32::from_le_bytes(c.try_into().unwrap_or_default()))).collect())
        }
        DataType::I32 => {
            Elements::Numbers(chunks.map(|c| f64::from(i32::from_le_bytes(c.try_into().unwrap_or_default()))).collect())
        }
        DataType::F32 => {
            Elements::Numbers(chunks.map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default()))).collect())
        }
        DataType::U64 => Elements::Numbers(chunks.map(|c| u64::from_le_bytes(le(c)) as f64).collect()),
        DataType::I64 => Elements::Numbers(chunks.map(|c| i64::from_le_bytes(le(c)) as f64).collect()),
        DataType::F64 => Elements::Numbers(chunks.map(|c| f64::from_le_bytes(le(c))).collect()),
        DataType::Bytes => unreachable!("BYTES has no fixed width"),
    })
}

/// BYTES elements: each a 4-byte little-endian length, then that many bytes.
fn bytes_elements(mut bytes: &[u8], count: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut elements = Vec::with_capacity(count.min(bytes.len() / 4));
    while !bytes.is_empty() {
        let (length, rest) = bytes.split_first_chunk::<4>().ok_or("BYTES data ends inside an element's length")?;
        let length = u32::from_le_bytes(*length) as usize;
        let element = rest.get(..length).ok_or("BYTES data ends inside an element")?;
        elements.push(element.to_vec());
        bytes = &rest[length..];
    }
    if elements.len() != count {
        return Err(format!("BYTES data holds {} elements, the shape {count}", elements.len()));
    }
    Ok(elements)
}

/// Appends one BYTES element in binary form.
pub fn push_bytes_element(out: &mut Vec<u8>, element: &[u8]) {
    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
    out.extend_from_slice(element);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_data_may_be_flat_or_nested() {
        let flat = from_json(&json!([1, 2.5, 3]), DataType::F32).unwrap();
        assert_eq!(flat, Elements::Numbers(vec![1.0, 2.5, 3.0]));
        assert_eq!(from_json(&json!([[1, 2.5], [3]]), DataType::F64).unwrap(), flat);
        assert_eq!(from_json(&json!(["a", "b"]), DataType::Bytes).unwrap().len(), 2);
        assert!(from_json(&json!([1.5]), DataType::I32).unwrap_err().contains("an integer"));
        assert!(from_json(&json!(["1"]), DataType::F32).unwrap_err().contains("element 0"));
    }

    #[test]
    fn binary_data_is_little_endian_and_checked_for_size() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(from_binary(&bytes, DataType::F32, 2).unwrap(), Elements::Numbers(vec![1.5, -2.0]));
        assert!(from_binary(&bytes, DataType::F32, 3).is_err());
        // A shape whose byte size overflows is an error, not a panic.
        assert!(from_binary(&bytes, DataType::F64, usize::MAX / 2).is_err());
        let bytes: Vec<u8> = [7i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(from_binary(&bytes, DataType::I64, 2).unwrap(), Elements::Numbers(vec![7.0, -1.0]));
        let half: Vec<u8> = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        assert_eq!(from_binary(&half, DataType::F16, 1).unwrap(), Elements::Numbers(vec![0.5]));
    }

    #[test]
    fn bytes_elements_are_length_prefixed() {
        let mut data = Vec::new();
        push_bytes_element(&mut data, b"red");
        push_bytes_element(&mut data, b"");
        assert_eq!(from_binary(&data, DataType::Bytes, 2).unwrap(), Elements::Bytes(vec![b"red".to_vec(), vec![]]));
        assert!(from_binary(&data, DataType::Bytes, 3).is_err());
        assert!(from_binary(&data[..5], DataType::Bytes, 1).is_err());
        assert!(from_binary(&[9, 0, 0], DataType::Bytes, 1).is_err());
    }

    #[test]
    fn shapes_count_their_elements() {
        assert_eq!(element_count(&[3, 2]), Ok(6));
        assert_eq!(element_count(&[]), Ok(1));
        assert!(element_count(&[-1, 2]).is_err());
        assert!(element_count(&[i64::MAX, i64::MAX]).is_err());
    }
}
