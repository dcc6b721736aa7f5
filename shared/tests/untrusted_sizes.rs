//! Weight files from untrusted sources: a `.pt` or safetensors file that claims a huge tensor
//! is refused with an error naming the claim, before anything of that size is allocated (the
//! readers compare every claim with the bytes the file holds first), and hostile pickles are
//! refused in words rather than by exhausting the stack or memory.

mod common;

use std::io::Write;

use candle_core::Device;
use caption_model::weights::{read_original_pt, read_original_pt_bytes, read_safetensors_bytes};

/// A pickle int (LONG1, 8 bytes).
fn int(v: i64) -> Vec<u8> {
    let mut out = vec![0x8a, 8];
    out.extend(v.to_le_bytes());
    out
}

fn unicode(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
    out
}

/// `{"model_state_dict": OrderedDict(w=tensor)}` as PyTorch pickles it: an f32 tensor of
/// `shape` (row-major) at `offset` in storage `0`, which claims `numel` elements.
fn pickle(numel: i64, offset: i64, shape: &[i64]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    p.extend(unicode("model_state_dict"));
    p.extend(b"ccollections\nOrderedDict\n)R(");
    p.extend(unicode("w"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(unicode("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(unicode("0"));
    p.extend(unicode("cpu"));
    p.extend(int(numel));
    p.extend(b"tQ");
    p.extend(int(offset));
    p.push(b'(');
    shape.iter().for_each(|&d| p.extend(int(d)));
    p.extend(b"t(");
    let mut stride = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        stride[i] = stride[i + 1] * shape[i + 1];
    }
    stride.iter().for_each(|&d| p.extend(int(d)));
    p.extend(b"t\x89ccollections\nOrderedDict\n)RtRus.");
    p
}

/// A `torch.save` zip: `archive/data.pkl` and a 64-byte storage `archive/data/0`.
fn pt(pickle: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/data/0", opts).unwrap();
    let values: Vec<u8> = (0..16).flat_map(|i| (i as f32).to_le_bytes()).collect();
    zip.write_all(&values).unwrap();
    zip.finish().unwrap().into_inner()
}

fn pt_error(bytes: &[u8]) -> String {
    read_original_pt_bytes(bytes).unwrap_err().to_string()
}

#[test]
fn a_crafted_pt_is_read_when_its_claims_hold() {
    let tensors = read_original_pt_bytes(&pt(&pickle(16, 4, &[3, 4]))).unwrap();
    let w = tensors["w"].to_vec2::<f32>().unwrap();
    assert_eq!(w[0], [4.0, 5.0, 6.0, 7.0]);
    assert_eq!(w[2], [12.0, 13.0, 14.0, 15.0]);
}

#[test]
fn pt_storage_claiming_2_pow_40_elements_is_refused_before_allocating() {
    let err = pt_error(&pt(&pickle(1 << 40, 0, &[1 << 20, 1 << 20])));
    assert!(
        err.contains("tensor `w`")
            && err.contains("claims 1099511627776 elements")
            && err.contains("holds 64 bytes"),
        "{err}"
    );
}

#[test]
fn pt_shape_beyond_its_storage_is_refused_before_allocating() {
    let err = pt_error(&pt(&pickle(16, 0, &[1 << 20, 1 << 20])));
    assert!(
        err.contains("tensor `w`") && err.contains("[1048576, 1048576]") && err.contains("storage claims 16"),
        "{err}"
    );
    let err = pt_error(&pt(&pickle(16, 8, &[3, 4])));
    assert!(err.contains("at offset 8 needs 20 elements"), "{err}");
    let err = pt_error(&pt(&pickle(16, 0, &[1 << 40, 1 << 40])));
    assert!(err.contains("overflows"), "{err}");
}

#[test]
fn pt_zip_entry_claiming_more_than_the_file_is_refused() {
    let mut bytes = pt(&pickle(16, 0, &[4, 4]));
    // Raise the storage's sizes in its central-directory record (the last one) to 2^31.
    let cd = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    bytes[cd + 20..cd + 28].copy_from_slice(&[0, 0, 0, 0x80, 0, 0, 0, 0x80]);
    let err = pt_error(&bytes);
    assert!(err.contains("not a readable PyTorch checkpoint"), "{err}");
}

#[test]
fn hostile_pickles_are_refused_in_words() {
    // 10,000 nested tuples.
    let mut deep = vec![0x80, 2, b'N'];
    deep.extend(std::iter::repeat_n(0x85, 10_000));
    deep.push(b'.');
    assert!(pt_error(&pt(&deep)).contains("more than 100 deep"));
    // A memo doubling a list 40 times ("billion laughs").
    let mut laughs = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        laughs.extend(b"h\x00h\x00\x86q\x00");
    }
    laughs.push(b'.');
    assert!(pt_error(&pt(&laughs)).contains("memo copies exceed"));
    // A string longer than the pickle.
    let mut long = vec![0x80, 2, b'X'];
    long.extend(u32::MAX.to_le_bytes());
    assert!(pt_error(&pt(&long)).contains("pickle ends early"));
    // A 9-byte int.
    assert!(pt_error(&pt(&[0x80, 2, 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, b'.'])).contains("LONG1"));
}

#[test]
fn safetensors_header_claiming_a_huge_tensor_is_refused_before_allocating() {
    let header = br#"{"w":{"dtype":"F32","shape":[1048576,1048576],"data_offsets":[0,16]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend([0u8; 16]);
    let err = read_safetensors_bytes(&file, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor `w` claims shape [1048576, 1048576] of F32 (4398046511104 bytes)")
            && err.contains("holds 16 bytes"),
        "{err}"
    );
    let mut file = (1u64 << 40).to_le_bytes().to_vec();
    file.extend(header);
    let err = read_safetensors_bytes(&file, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("header claims 1099511627776 bytes"), "{err}");
}

#[test]
fn the_fixture_pt_reads_as_candle_reads_it() {
    let path = common::fixture("fixtures/seed_checkpoint/mlp_resampler-epoch3.pt");
    let ours = read_original_pt(&path).unwrap();
    let theirs = candle_core::pickle::read_all_with_key(&path, Some("model_state_dict")).unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (name, t) in theirs {
        let o = &ours[&name];
        assert_eq!(o.dims(), t.dims(), "{name}");
        let (a, b) = (
            o.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a, b, "{name}");
    }
}
