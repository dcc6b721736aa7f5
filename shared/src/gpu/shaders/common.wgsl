// Prepended to every kernel. Dispatch parameters arrive as one uniform block of 64 words
// (uniform, not storage, so that values derived from them count as workgroup-uniform and may
// bound loops that contain barriers).
struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> params: Params;

// Parameter word `i` as an unsigned integer.
fn pu(i: u32) -> u32 {
    return params.v[i / 4u][i % 4u];
}

// Parameter word `i` as an f32 (the host writes its bits).
fn pf(i: u32) -> f32 {
    return bitcast<f32>(pu(i));
}

// Grids over 65535 workgroups are split 2-D by the host; this is the linear workgroup index.
fn wg_linear(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
