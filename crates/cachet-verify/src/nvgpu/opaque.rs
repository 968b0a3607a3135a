//! NVIDIA's opaque-data fields in the SPDM `MEASUREMENTS` response.
//!
//! The field numbers and encodings are NVIDIA's (nvtrust
//! `local_gpu_verifier/src/verifier/attestation/spdm_msrt_resp_msg.py`,
//! `OpaqueData.OPAQUE_DATA_TYPES`, and `utils.format_vbios_version`). They
//! are inside the signed response, so once the signature verifies they are
//! the GPU's own statement of its driver and VBIOS versions, board and
//! firmware identity.

use serde_json::{Map, Value};

use super::spdm::OpaqueField;

/// `OPAQUE_FIELD_ID_DRIVER_VERSION`: NUL-terminated ASCII, e.g. `545.00`.
pub const DRIVER_VERSION: u16 = 3;
/// `OPAQUE_FIELD_ID_VBIOS_VERSION`: 8 bytes, rendered `96.00.5E.00.01`.
pub const VBIOS_VERSION: u16 = 6;
/// `OPAQUE_FIELD_ID_NVDEC0_STATUS`: 0xAA enabled, 0x55 disabled.
pub const NVDEC0_STATUS: u16 = 11;
/// `OPAQUE_FIELD_ID_CHIP_SKU`.
pub const CHIP_SKU: u16 = 15;
/// `OPAQUE_FIELD_ID_PROJECT`.
pub const PROJECT: u16 = 17;
/// `OPAQUE_FIELD_ID_PROJECT_SKU`.
pub const PROJECT_SKU: u16 = 18;
/// `OPAQUE_FIELD_ID_FWID`: the firmware ID also certified in the leaf.
pub const FWID: u16 = 20;
/// `OPAQUE_FIELD_ID_CHIP_INFO` (Blackwell and later): chip name, e.g. `GB100`.
pub const CHIP_INFO: u16 = 35;

/// NVDEC0 disabled: NVIDIA's verifier then does not compare measurement 35.
pub const NVDEC0_DISABLED: u8 = 0x55;
/// NVDEC0 enabled.
pub const NVDEC0_ENABLED: u8 = 0xAA;

/// NVIDIA's name for an opaque field number (snake_case, without the
/// `OPAQUE_FIELD_ID_` prefix), or `field_<n>` for numbers NVIDIA has not
/// named.
pub fn field_name(id: u16) -> String {
    let name = match id {
        1 => "cert_issuer_name",
        2 => "cert_authority_key_identifier",
        3 => "driver_version",
        4 => "gpu_info",
        5 => "sku",
        6 => "vbios_version",
        7 => "manufacturer_id",
        8 => "tamper_detection",
        9 => "smc",
        10 => "vpr",
        11 => "nvdec0_status",
        12 => "msrscnt",
        13 => "cprinfo",
        14 => "board_id",
        15 => "chip_sku",
        16 => "chip_sku_mod",
        17 => "project",
        18 => "project_sku",
        19 => "project_sku_mod",
        20 => "fwid",
        21 => "protected_pcie_status",
        22 => "switch_pdi",
        23 => "floorswept_ports",
        24 => "position_id",
        25 => "lock_switch_status",
        32 => "gpu_link_conn",
        33 => "sys_enable_status",
        34 => "opaque_data_version",
        35 => "chip_info",
        36 => "feature_flag",
        _ => return format!("field_{id}"),
    };
    name.to_string()
}

/// The value of one field, if present.
pub fn get(fields: &[OpaqueField], id: u16) -> Option<&[u8]> {
    fields.iter().find(|f| f.id == id).map(|f| f.value.as_slice())
}

/// A text field: ASCII up to the first NUL, surrounding spaces trimmed.
/// `None` when absent, empty or not printable ASCII.
pub fn text(fields: &[OpaqueField], id: u16) -> Option<String> {
    let raw = get(fields, id)?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let s = std::str::from_utf8(raw.get(..end)?).ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return None;
    }
    Some(s.to_string())
}

/// The VBIOS version as NVIDIA renders it (`format_vbios_version`): for the
/// 8 bytes `b0..b7`, `b3.b2.b1.b0.b4` in upper-case hex, e.g.
/// `00 5e 00 96 01 00 00 00` -> `96.00.5E.00.01`. `None` unless 8 bytes.
pub fn vbios_version(fields: &[OpaqueField]) -> Option<String> {
    let b = get(fields, VBIOS_VERSION)?;
    if b.len() != 8 {
        return None;
    }
    Some(format!("{:02X}.{:02X}.{:02X}.{:02X}.{:02X}", b[3], b[2], b[1], b[0], b[4]))
}

/// Whether the report says NVDEC0 is disabled.
pub fn nvdec0_disabled(fields: &[OpaqueField]) -> bool {
    get(fields, NVDEC0_STATUS) == Some(&[NVDEC0_DISABLED][..])
}

/// Every field as a JSON object: text fields as text, the rest as hex.
pub fn to_json(fields: &[OpaqueField]) -> Value {
    let mut m = Map::new();
    for f in fields {
        let v = match f.id {
            DRIVER_VERSION | CHIP_SKU | PROJECT | PROJECT_SKU | CHIP_INFO | 16 | 19 => match text(fields, f.id) {
                Some(s) => Value::String(s),
                None => Value::String(hex::encode(&f.value)),
            },
            VBIOS_VERSION => match vbios_version(fields) {
                Some(s) => Value::String(s),
                None => Value::String(hex::encode(&f.value)),
            },
            _ => Value::String(hex::encode(&f.value)),
        };
        m.insert(field_name(f.id), v);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: u16, v: &[u8]) -> OpaqueField {
        OpaqueField { id, value: v.to_vec() }
    }

    #[test]
    fn renders_vbios_version_like_nvidia() {
        let fields = [f(VBIOS_VERSION, &[0x00, 0x5e, 0x00, 0x96, 0x01, 0, 0, 0])];
        assert_eq!(vbios_version(&fields).as_deref(), Some("96.00.5E.00.01"));
        assert_eq!(vbios_version(&[f(VBIOS_VERSION, &[1, 2, 3])]), None);
    }

    #[test]
    fn reads_nul_terminated_text() {
        let fields = [f(DRIVER_VERSION, b"550.90.07\0"), f(CHIP_SKU, b"882\0\0\0"), f(PROJECT, b"\0")];
        assert_eq!(text(&fields, DRIVER_VERSION).as_deref(), Some("550.90.07"));
        assert_eq!(text(&fields, CHIP_SKU).as_deref(), Some("882"));
        assert_eq!(text(&fields, PROJECT), None);
        assert_eq!(text(&[f(PROJECT, b"a\x01b")], PROJECT), None);
    }

    #[test]
    fn nvdec_status() {
        assert!(nvdec0_disabled(&[f(NVDEC0_STATUS, &[0x55])]));
        assert!(!nvdec0_disabled(&[f(NVDEC0_STATUS, &[0xAA])]));
        assert!(!nvdec0_disabled(&[]));
    }

    #[test]
    fn json_names_fields() {
        let v = to_json(&[f(DRIVER_VERSION, b"545.00\0"), f(14, &[0xb1, 3, 0, 0]), f(99, &[1])]);
        assert_eq!(v["driver_version"], "545.00");
        assert_eq!(v["board_id"], "b1030000");
        assert_eq!(v["field_99"], "01");
    }
}
