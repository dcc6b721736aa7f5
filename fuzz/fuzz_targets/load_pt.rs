//! Fuzzes the original trainer's `.pt` reader (`torch.save` zip + pickle). The first byte picks
//! how the rest is used: 0 = a whole `.pt` file; 1 = the `data.pkl` pickle, zipped (stored,
//! with valid checksums, which random bytes never have) beside eight small storages
//! `archive/data/0`..`7` of 64·(k+1) bytes, so that mutations reach the pickle machine and the
//! tensor checks behind it. Any outcome but a panic, a hang or a large allocation is fine.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use caption_model::weights::read_original_pt_bytes;
use libfuzzer_sys::fuzz_target;
use zip::write::SimpleFileOptions;

/// A `torch.save` zip of `pickle` and the eight fixed storages.
fn zipped(pickle: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: &str, bytes: &[u8]| {
        zip.start_file(name, opts).expect("zip entry");
        zip.write_all(bytes).expect("zip write");
    };
    add("archive/data.pkl", pickle);
    for k in 0..8u8 {
        let bytes: Vec<u8> = (0..64 * (k as usize + 1)).map(|i| (i as u8) ^ k).collect();
        add(&format!("archive/data/{k}"), &bytes);
    }
    zip.finish().expect("zip").into_inner()
}

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

/// `{"model_state_dict": OrderedDict(name: tensor)}` as PyTorch pickles it (protocol 2), with
/// f32 tensors (name, storage key, storage numel, offset, shape, stride).
fn state_dict_pickle(tensors: &[(&str, &str, i64, i64, &[i64], &[i64])]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    p.extend(unicode("model_state_dict"));
    p.extend(b"ccollections\nOrderedDict\n)R(");
    for (name, key, numel, offset, shape, stride) in tensors {
        p.extend(unicode(name));
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        p.extend(unicode("storage"));
        p.extend(b"ctorch\nFloatStorage\n");
        p.extend(unicode(key));
        p.extend(unicode("cpu"));
        p.extend(int(*numel));
        p.extend(b"tQ");
        p.extend(int(*offset));
        p.push(b'(');
        shape.iter().for_each(|&d| p.extend(int(d)));
        p.extend(b"t(");
        stride.iter().for_each(|&d| p.extend(int(d)));
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtRq\x01");
    }
    p.extend(b"us.");
    p
}

fn seeds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // `CAPTION_FUZZ_SEEDS=<dir>` writes seed inputs for the corpus: a small state dict
        // (a row-major, a column-major and an offset tensor) in both modes, and the pickle of
        // the real fixture checkpoint in mode 1.
        let Some(dir) = std::env::var_os("CAPTION_FUZZ_SEEDS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let pickle = state_dict_pickle(&[
            ("a.weight", "0", 16, 0, &[4, 4], &[4, 1]),
            ("b.weight", "1", 32, 0, &[4, 8], &[1, 4]),
            ("c.bias", "2", 48, 40, &[8], &[1]),
        ]);
        let mut seed = vec![1u8];
        seed.extend(&pickle);
        std::fs::write(dir.join("seed-mode1"), seed).expect("seed");
        let mut seed = vec![0u8];
        seed.extend(zipped(&pickle));
        std::fs::write(dir.join("seed-mode0"), seed).expect("seed");
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/seed_checkpoint/mlp_resampler-epoch3.pt"
        );
        if let Ok(file) = std::fs::File::open(fixture) {
            let mut zip = zip::ZipArchive::new(file).expect("fixture zip");
            let mut entry = zip
                .by_name("mlp_resampler-epoch3/data.pkl")
                .expect("fixture pickle");
            let mut seed = vec![1u8];
            std::io::Read::read_to_end(&mut entry, &mut seed).expect("fixture pickle");
            std::fs::write(dir.join("seed-mode1-fixture"), seed).expect("seed");
        }
    });
}

fuzz_target!(|data: &[u8]| {
    seeds();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 2 {
        0 => {
            let _ = read_original_pt_bytes(rest);
        }
        _ => {
            let _ = read_original_pt_bytes(&zipped(rest));
        }
    }
});
