// Attention, one query row (b, h, i) per workgroup (the arithmetic in attend_core.wgsl).
// Every operand is addressed with strides, so the heads are read where the projections left
// them and the result is written with the heads merged: no permute or narrow kernels. Keys
// and values [.., Sk, Dh] per (b, h) may sit in a longer cache (stride sj per position).
// With word 7 set (one query per row), the query's own key and value are first copied from
// q's buffer into the cache's last position: the cache is appended to in place. With word 26
// set, `rowmap` [B, Sk] (row stride word 27) says which stored row of the cache holds each
// position of each row: beam search reorders rows by rewriting this table, not the cache (a
// row's new positions are stored in its own row).
// Words: 0 rows (B*H*Sq), 1 H, 2 Sq, 3 Sk, 4 Dh, 5 has bias, 6 q scale (f32 bits), 7 append,
// 8..11 bias strides (b, h, i, j), 12 q offset, 13..15 q strides (b, i, h), 16..18 key/value
// strides (b, h, j), 20..22 output strides (b, i, h), 24 and 25 the new key's and value's
// offsets in q's buffer (strided as q), 26 has rowmap, 27 its row stride.
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read> rowmap: array<u32>;

var<workgroup> red: array<f32, 64>;
// The row's query, scaled (heads of at most 256).
var<workgroup> qs: array<f32, 256>;

// Where key/value j of row b, head h starts: in the stored row the row map names.
fn key_at(b: u32, h: u32, j: u32) -> u32 {
    var stored = b;
    if pu(26u) != 0u {
        stored = rowmap[b * pu(27u) + j];
    }
    return stored * pu(16u) + h * pu(17u) + j * pu(18u);
}

fn score_bias(s: f32, bo: u32, j: u32) -> f32 {
    if pu(5u) != 0u {
        return s + bias[bo + j * pu(11u)];
    }
    return s;
}

@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wid, nwg);
    if row >= pu(0u) {
        return;
    }
    let heads = pu(1u);
    let sq = pu(2u);
    let sk = pu(3u);
    let dh = pu(4u);
    let bh = row / sq;
    let i = row % sq;
    let b = bh / heads;
    let h = bh % heads;
    if pu(7u) != 0u {
        // Row b's new position is stored in row b.
        let src = b * pu(13u) + h * pu(15u);
        let dst = b * pu(16u) + h * pu(17u) + (sk - 1u) * pu(18u);
        for (var d = li; d < dh; d += WG) {
            k[dst + d] = q[pu(24u) + src + d];
            v[dst + d] = q[pu(25u) + src + d];
        }
        storageBarrier();
    }
    let qo = pu(12u) + b * pu(13u) + i * pu(14u) + h * pu(15u);
    for (var d = li; d < dh; d += WG) {
        qs[d] = q[qo + d] * pf(6u);
    }
    workgroupBarrier();
    let oo = b * pu(20u) + i * pu(21u) + h * pu(22u);
    let bo = b * pu(8u) + h * pu(9u) + i * pu(10u);
    attend_core(li, sk, dh, b, h, row * sk, oo, bo);
}
