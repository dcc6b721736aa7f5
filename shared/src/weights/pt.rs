//! The original trainer's `.pt` checkpoints (`torch.save`: a zip holding `<dir>/data.pkl` and
//! one stored entry `<dir>/data/<key>` per storage), read from untrusted bytes.
//!
//! The pickle is interpreted by a small stack machine that knows only the opcodes PyTorch
//! writes, never executed. Everything an attacker controls is bounded before it costs memory:
//! strings must lie within the pickle, objects nest at most [`MAX_DEPTH`] deep, memo copies
//! count against a node budget, and a tensor's claimed shape, offset and storage size are
//! checked against the bytes its zip entry really holds before its buffer is allocated.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use candle_core::{DType, Device, Tensor};

/// Deepest object nesting accepted in a pickle (PyTorch's own files nest about 10 deep).
pub const MAX_DEPTH: usize = 100;
/// Object nodes that memo copies may create in all (a real checkpoint's pickle needs a few
/// per byte of pickle); bounds the "billion laughs" a memo allows.
const NODE_BUDGET: usize = 1 << 22;
/// Largest `data.pkl` read (a full-size model's is well under 1 MB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// A pickled value, as far as a state dict needs them.
#[derive(Clone, Debug)]
enum Obj {
    None,
    /// True or False (the value is not needed).
    Bool,
    Int(i64),
    /// A float (the value is not needed).
    Float,
    Str(String),
    Class {
        module: String,
        name: String,
    },
    Tuple(Vec<Obj>),
    List(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
    Reduce(Box<Obj>, Box<Obj>),
    Build(Box<Obj>, Box<Obj>),
    PersId(Box<Obj>),
}

impl Obj {
    /// A word for messages (never the object itself: it may be huge).
    fn kind(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool => "a bool",
            Obj::Int(_) => "an int",
            Obj::Float => "a float",
            Obj::Str(_) => "a string",
            Obj::Class { .. } => "a class",
            Obj::Tuple(_) => "a tuple",
            Obj::List(_) => "a list",
            Obj::Dict(_) => "a dict",
            Obj::Reduce(..) => "a call",
            Obj::Build(..) => "a built object",
            Obj::PersId(_) => "a persistent id",
        }
    }

    /// Whether the cost of copying this object (nodes, plus 1 per 64 string bytes) fits in
    /// `left`, which is reduced by it.
    fn charge(&self, left: &mut usize) -> bool {
        let cost = match self {
            Obj::Str(s) => 1 + s.len() / 64,
            Obj::Class { module, name } => 1 + (module.len() + name.len()) / 64,
            _ => 1,
        };
        if *left < cost {
            return false;
        }
        *left -= cost;
        match self {
            Obj::Tuple(v) | Obj::List(v) => v.iter().all(|o| o.charge(left)),
            Obj::Dict(v) => v.iter().all(|(k, o)| k.charge(left) && o.charge(left)),
            Obj::Reduce(a, b) | Obj::Build(a, b) => a.charge(left) && b.charge(left),
            Obj::PersId(a) => a.charge(left),
            _ => true,
        }
    }
}

/// A stack entry: an object and how deep it nests (a leaf is 0).
#[derive(Clone)]
struct Item {
    obj: Obj,
    depth: usize,
}

/// The pickle machine over one `data.pkl`.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    /// Stack lengths at each MARK (Python's metastack).
    marks: Vec<usize>,
    memo: HashMap<u32, Item>,
    budget: usize,
}

type PResult<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            budget: NODE_BUDGET,
        }
    }

    fn bytes(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "pickle ends early: {n} bytes wanted at offset {} of {}",
                    self.pos,
                    self.data.len()
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    fn line(&mut self) -> PResult<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle ends inside a GLOBAL name")?;
        let line = &rest[..n];
        self.pos += n + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Ok(String::from_utf8_lossy(line).into_owned())
    }

    fn push(&mut self, obj: Obj, depth: usize) -> PResult<()> {
        if depth > MAX_DEPTH {
            return Err(format!("pickle nests objects more than {MAX_DEPTH} deep"));
        }
        self.stack.push(Item { obj, depth });
        Ok(())
    }

    fn leaf(&mut self, obj: Obj) -> PResult<()> {
        self.push(obj, 0)
    }

    fn pop(&mut self) -> PResult<Item> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("pickle pops from an empty stack".into());
        }
        self.stack
            .pop()
            .ok_or_else(|| "pickle pops from an empty stack".into())
    }

    fn top(&mut self) -> PResult<&mut Item> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("pickle's stack is empty where an object is needed".into());
        }
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle's stack is empty".into())
    }

    fn pop_mark(&mut self) -> PResult<(Vec<Obj>, usize)> {
        let at = self.marks.pop().ok_or("pickle has no MARK to pop to")?;
        let items = self.stack.split_off(at);
        let depth = items.iter().map(|i| i.depth).max().unwrap_or(0);
        Ok((items.into_iter().map(|i| i.obj).collect(), depth))
    }

    fn memo_get(&mut self, id: u32) -> PResult<()> {
        let item = self
            .memo
            .get(&id)
            .ok_or_else(|| format!("pickle reads memo entry {id}, which was never stored"))?;
        let item = copy_counted(item, &mut self.budget)?;
        self.stack.push(item);
        Ok(())
    }

    fn memo_put(&mut self, id: u32) -> PResult<()> {
        let floor = self.marks.last().copied().unwrap_or(0);
        let top = self
            .stack
            .last()
            .filter(|_| self.stack.len() > floor)
            .ok_or("pickle memoizes from an empty stack")?;
        let item = copy_counted(top, &mut self.budget)?;
        self.memo.insert(id, item);
        Ok(())
    }

    fn pair(&mut self) -> PResult<(Item, Item)> {
        let b = self.pop()?;
        let a = self.pop()?;
        Ok((a, b))
    }

    /// Runs to STOP and returns the result.
    fn run(mut self) -> PResult<Obj> {
        loop {
            let [op] = self.array::<1>()?;
            match op {
                0x80 => {
                    self.bytes(1)?; // PROTO
                }
                0x95 => {
                    self.bytes(8)?; // FRAME
                }
                b'.' => {
                    let item = self.pop()?;
                    return Ok(item.obj);
                }
                b'N' => self.leaf(Obj::None)?,
                0x88 => self.leaf(Obj::Bool)?,
                0x89 => self.leaf(Obj::Bool)?,
                b'K' => {
                    let [b] = self.array::<1>()?;
                    self.leaf(Obj::Int(b.into()))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.leaf(Obj::Int(v.into()))?
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.leaf(Obj::Int(v.into()))?
                }
                0x8a => {
                    // LONG1: n little-endian two's-complement bytes.
                    let [n] = self.array::<1>()?;
                    let bytes = self.bytes(n.into())?;
                    if n > 8 {
                        return Err(format!("pickle LONG1 of {n} bytes does not fit 64 bits"));
                    }
                    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    };
                    let mut le = [fill; 8];
                    le[..bytes.len()].copy_from_slice(bytes);
                    self.leaf(Obj::Int(i64::from_le_bytes(le)))?
                }
                b'G' => {
                    self.bytes(8)?;
                    self.leaf(Obj::Float)?
                }
                b'X' | 0x8c => {
                    let len = if op == b'X' {
                        u32::from_le_bytes(self.array()?) as usize
                    } else {
                        self.array::<1>()?[0].into()
                    };
                    let bytes = self.bytes(len)?;
                    let s =
                        std::str::from_utf8(bytes).map_err(|e| format!("pickle string is not UTF-8: {e}"))?;
                    self.leaf(Obj::Str(s.to_string()))?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.leaf(Obj::Class { module, name })?
                }
                b'(' => self.marks.push(self.stack.len()),
                b')' => self.leaf(Obj::Tuple(Vec::new()))?,
                b']' => self.leaf(Obj::List(Vec::new()))?,
                b'}' => self.leaf(Obj::Dict(Vec::new()))?,
                b't' => {
                    let (objs, depth) = self.pop_mark()?;
                    self.push(Obj::Tuple(objs), depth + 1)?
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let depth = items.iter().map(|i| i.depth).max().unwrap_or(0);
                    self.push(Obj::Tuple(items.into_iter().map(|i| i.obj).collect()), depth + 1)?
                }
                b'd' => {
                    let (objs, depth) = self.pop_mark()?;
                    let pairs = pairs(objs)?;
                    self.push(Obj::Dict(pairs), depth + 1)?
                }
                b'a' => {
                    let value = self.pop()?;
                    let top = self.top()?;
                    let Obj::List(list) = &mut top.obj else {
                        return Err(format!("pickle APPEND to {}", top.obj.kind()));
                    };
                    list.push(value.obj);
                    top.depth = top.depth.max(value.depth + 1);
                    check_depth(top.depth)?;
                }
                b'e' => {
                    let (objs, depth) = self.pop_mark()?;
                    let top = self.top()?;
                    let Obj::List(list) = &mut top.obj else {
                        return Err(format!("pickle APPENDS to {}", top.obj.kind()));
                    };
                    list.extend(objs);
                    top.depth = top.depth.max(depth + 1);
                    check_depth(top.depth)?;
                }
                b's' => {
                    let (key, value) = self.pair()?;
                    let top = self.top()?;
                    let Obj::Dict(dict) = &mut top.obj else {
                        return Err(format!("pickle SETITEM on {}", top.obj.kind()));
                    };
                    dict.push((key.obj, value.obj));
                    top.depth = top.depth.max(key.depth.max(value.depth) + 1);
                    check_depth(top.depth)?;
                }
                b'u' => {
                    let (objs, depth) = self.pop_mark()?;
                    let new = pairs(objs)?;
                    let top = self.top()?;
                    let Obj::Dict(dict) = &mut top.obj else {
                        return Err(format!("pickle SETITEMS on {}", top.obj.kind()));
                    };
                    dict.extend(new);
                    top.depth = top.depth.max(depth + 1);
                    check_depth(top.depth)?;
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.push(Obj::PersId(Box::new(id.obj)), id.depth + 1)?
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: a call, never made; OrderedDict() and defaultdict()
                    // become the dicts their SETITEMS fill.
                    let (callable, args) = self.pair()?;
                    let is_dict = matches!(&callable.obj, Obj::Class { module, name }
                        if op == b'R' && module == "collections" && (name == "OrderedDict" || name == "defaultdict"));
                    if is_dict {
                        self.leaf(Obj::Dict(Vec::new()))?
                    } else {
                        let depth = callable.depth.max(args.depth) + 1;
                        self.push(Obj::Reduce(Box::new(callable.obj), Box::new(args.obj)), depth)?
                    }
                }
                b'b' => {
                    let (obj, state) = self.pair()?;
                    match (obj.obj, state.obj) {
                        (Obj::Dict(mut d), Obj::Dict(s)) => {
                            d.extend(s);
                            self.push(Obj::Dict(d), obj.depth.max(state.depth))?
                        }
                        (o, s) => {
                            let depth = obj.depth.max(state.depth) + 1;
                            self.push(Obj::Build(Box::new(o), Box::new(s)), depth)?
                        }
                    }
                }
                b'h' => {
                    let [id] = self.array::<1>()?;
                    self.memo_get(id.into())?
                }
                b'j' => {
                    let id = u32::from_le_bytes(self.array()?);
                    self.memo_get(id)?
                }
                b'q' => {
                    let [id] = self.array::<1>()?;
                    self.memo_put(id.into())?
                }
                b'r' => {
                    let id = u32::from_le_bytes(self.array()?);
                    self.memo_put(id)?
                }
                0x94 => {
                    let id = u32::try_from(self.memo.len()).map_err(|_| "pickle memo is full".to_string())?;
                    self.memo_put(id)?
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at offset {} is not one PyTorch checkpoints use",
                        self.pos - 1
                    ))
                }
            }
        }
    }
}

/// A copy of `item`, charged to `budget`.
fn copy_counted(item: &Item, budget: &mut usize) -> PResult<Item> {
    if !item.obj.charge(budget) {
        return Err(format!(
            "pickle's memo copies exceed {NODE_BUDGET} objects (a crafted pickle?)"
        ));
    }
    Ok(item.clone())
}

fn check_depth(depth: usize) -> PResult<()> {
    if depth > MAX_DEPTH {
        return Err(format!("pickle nests objects more than {MAX_DEPTH} deep"));
    }
    Ok(())
}

fn pairs(objs: Vec<Obj>) -> PResult<Vec<(Obj, Obj)>> {
    if !objs.len().is_multiple_of(2) {
        return Err("pickle dict has a key without a value".into());
    }
    let mut out = Vec::with_capacity(objs.len() / 2);
    let mut it = objs.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// One tensor of the state dict, as the pickle describes it.
struct TensorRef {
    name: String,
    dtype: DType,
    /// Zip entry of the storage: `<dir>/data/<key>`.
    entry: String,
    /// Elements the storage claims to hold.
    storage_len: usize,
    /// First element of the tensor within the storage.
    offset: usize,
    shape: Vec<usize>,
    /// Stored column-major (the reversed shape, then transposed back).
    fortran: bool,
}

fn as_int(obj: &Obj, what: &str) -> PResult<usize> {
    match obj {
        Obj::Int(v) => usize::try_from(*v).map_err(|_| format!("{what} is negative ({v})")),
        other => Err(format!("{what} is {}, not an int", other.kind())),
    }
}

fn as_ints(obj: &Obj, what: &str) -> PResult<Vec<usize>> {
    match obj {
        Obj::Tuple(v) | Obj::List(v) => v.iter().map(|o| as_int(o, what)).collect(),
        other => Err(format!("{what} is {}, not a tuple", other.kind())),
    }
}

fn is_class(obj: &Obj, m: &str, n: &str) -> bool {
    matches!(obj, Obj::Class { module, name } if module == m && name == n)
}

fn tuple_at<'o>(args: &'o Obj, n: usize, what: &str) -> PResult<&'o [Obj]> {
    match args {
        Obj::Tuple(v) if v.len() >= n => Ok(v),
        Obj::Tuple(v) => Err(format!("{what} has {} arguments, expected {n}", v.len())),
        other => Err(format!("{what} takes {}, not a tuple", other.kind())),
    }
}

/// Whether `stride` is the row-major stride of `shape` (dims of size 1 take any stride).
fn row_major(shape: &[usize], stride: &[usize]) -> bool {
    let mut acc = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d > 1 && s != acc {
            return false;
        }
        acc = acc.saturating_mul(d);
    }
    true
}

/// The tensor a state-dict value rebuilds (`torch._utils._rebuild_tensor_v2`, possibly wrapped
/// in `_rebuild_parameter` or `_rebuild_from_type_v2`); `None` for other values and for storage
/// types candle has no dtype for.
fn tensor_ref(name: &str, value: &Obj, dir: &str) -> PResult<Option<TensorRef>> {
    let Obj::Reduce(callable, args) = value else {
        return Ok(None);
    };
    let (mut callable, mut args) = (&**callable, &**args);
    if is_class(callable, "torch._tensor", "_rebuild_from_type_v2") {
        let a = tuple_at(args, 3, "_rebuild_from_type_v2")?;
        (callable, args) = (&a[0], &a[2]);
    } else if is_class(callable, "torch._utils", "_rebuild_parameter") {
        let a = tuple_at(args, 1, "_rebuild_parameter")?;
        let Obj::Reduce(c, x) = &a[0] else {
            return Err(format!(
                "tensor `{name}`: _rebuild_parameter wraps {}",
                a[0].kind()
            ));
        };
        (callable, args) = (&**c, &**x);
    }
    if !is_class(callable, "torch._utils", "_rebuild_tensor_v2") {
        return Ok(None);
    }
    let err = |e: String| format!("tensor `{name}`: {e}");
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks)
    let a = tuple_at(args, 4, "_rebuild_tensor_v2").map_err(err)?;
    let Obj::PersId(pid) = &a[0] else {
        return Err(err(format!("storage is {}, not a persistent id", a[0].kind())));
    };
    // ("storage", storage type, key, location, numel)
    let p = tuple_at(pid, 5, "the storage id").map_err(err)?;
    let Obj::Class {
        name: storage_type, ..
    } = &p[1]
    else {
        return Err(err(format!("storage type is {}", p[1].kind())));
    };
    let dtype = match storage_type.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "LongStorage" => DType::I64,
        _ => return Ok(None),
    };
    let Obj::Str(key) = &p[2] else {
        return Err(err(format!("storage key is {}", p[2].kind())));
    };
    let storage_len = as_int(&p[4], "storage size").map_err(err)?;
    let offset = as_int(&a[1], "storage offset").map_err(err)?;
    let shape = as_ints(&a[2], "size").map_err(err)?;
    let stride = as_ints(&a[3], "stride").map_err(err)?;
    if stride.len() != shape.len() {
        return Err(err(format!("{} strides for {} dims", stride.len(), shape.len())));
    }
    let fortran = if row_major(&shape, &stride) {
        false
    } else {
        let rev = |v: &[usize]| v.iter().rev().copied().collect::<Vec<_>>();
        if !row_major(&rev(&shape), &rev(&stride)) {
            return Err(err(format!(
                "non-contiguous layout (size {shape:?}, stride {stride:?})"
            )));
        }
        true
    };
    Ok(Some(TensorRef {
        name: name.to_string(),
        dtype,
        entry: format!("{dir}/{key}"),
        storage_len,
        offset,
        shape,
        fortran,
    }))
}

/// The `key` entry of the top-level dict (the whole object when it is not a dict), as
/// (name, value) pairs.
fn state_dict(top: Obj, key: &str) -> PResult<Vec<(String, Obj)>> {
    let obj = match top {
        Obj::Dict(entries) => entries
            .into_iter()
            .find(|(k, _)| matches!(k, Obj::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("the checkpoint has no `{key}` entry"))?,
        other => other,
    };
    let Obj::Dict(entries) = obj else {
        return Ok(Vec::new());
    };
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| match k {
            Obj::Str(k) => Some((k, v)),
            _ => None,
        })
        .collect())
}

/// A stored zip entry, checked to lie within the `file_len` bytes of the file.
fn stored_entry<'z, R: Read + Seek>(
    zip: &'z mut zip::ZipArchive<R>,
    name: &str,
    file_len: u64,
) -> PResult<(zip::read::ZipFile<'z, R>, u64)> {
    let entry = zip
        .by_name(name)
        .map_err(|e| format!("zip entry `{name}`: {e}"))?;
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(format!(
            "zip entry `{name}` is compressed ({}); PyTorch stores its entries uncompressed",
            entry.compression()
        ));
    }
    let size = entry.size();
    let end = entry
        .data_start()
        .and_then(|s| s.checked_add(entry.compressed_size()));
    if entry.compressed_size() != size || end.is_none_or(|e| e > file_len) {
        return Err(format!(
            "zip entry `{name}` claims {size} bytes, more than the {file_len}-byte file holds"
        ));
    }
    Ok((entry, size))
}

/// Reads one tensor: every claimed size is checked against the storage's entry before the
/// tensor's buffer is allocated.
fn read_tensor<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    file_len: u64,
    t: &TensorRef,
) -> PResult<Tensor> {
    let err = |e: String| format!("tensor `{}`: {e}", t.name);
    let elem = t.dtype.size_in_bytes();
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("shape {:?} overflows", t.shape)))?;
    let (mut entry, entry_bytes) = stored_entry(zip, &t.entry, file_len).map_err(err)?;
    let storage_bytes = (t.storage_len as u128) * (elem as u128);
    if storage_bytes > u128::from(entry_bytes) {
        return Err(err(format!(
            "storage `{}` claims {} elements of {:?} ({storage_bytes} bytes) but holds {entry_bytes} bytes",
            t.entry, t.storage_len, t.dtype
        )));
    }
    if (t.offset as u128) + (numel as u128) > t.storage_len as u128 {
        return Err(err(format!(
            "shape {:?} at offset {} needs {} elements but its storage claims {}",
            t.shape,
            t.offset,
            (t.offset as u128) + (numel as u128),
            t.storage_len
        )));
    }
    // Both fit in the entry, so in the file: now the buffer may be allocated.
    let (skip, len) = (t.offset * elem, numel * elem);
    std::io::copy(&mut (&mut entry).take(skip as u64), &mut std::io::sink())
        .map_err(|e| err(e.to_string()))?;
    let mut buf = vec![0u8; len];
    entry
        .read_exact(&mut buf)
        .map_err(|e| err(format!("reading `{}`: {e}", t.entry)))?;
    let stored: Vec<usize> = if t.fortran {
        t.shape.iter().rev().copied().collect()
    } else {
        t.shape.clone()
    };
    let tensor =
        Tensor::from_raw_buffer(&buf, t.dtype, &stored, &Device::Cpu).map_err(|e| err(e.to_string()))?;
    if t.fortran && t.shape.len() > 1 {
        let dims: Vec<usize> = (0..t.shape.len()).rev().collect();
        return tensor.permute(dims).map_err(|e| err(e.to_string()));
    }
    Ok(tensor)
}

/// The tensors of the `key` entry of a `torch.save` zip (`model_state_dict` for the original
/// trainer's checkpoints).
pub(super) fn read_pt<R: Read + Seek>(mut reader: R, key: &str) -> PResult<HashMap<String, Tensor>> {
    let file_len = reader.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| format!("not a zip archive: {e}"))?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).and_then(|n| n.ok()))
        .find(|n| n.ends_with("data.pkl"))
        .map(|n| n.into_owned())
        .ok_or("no data.pkl in the zip")?;
    let dir = pkl.strip_suffix(".pkl").unwrap_or(&pkl).to_string();
    let pickle = {
        let (entry, size) = stored_entry(&mut zip, &pkl, file_len)?;
        if size > MAX_PICKLE_BYTES {
            return Err(format!(
                "{pkl} is {size} bytes, more than the {MAX_PICKLE_BYTES} read"
            ));
        }
        let mut bytes = Vec::new();
        entry
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {pkl}: {e}"))?;
        bytes
    };
    let top = Machine::new(&pickle).run()?;
    let mut refs = Vec::new();
    for (name, value) in state_dict(top, key)? {
        if let Some(t) = tensor_ref(&name, &value, &dir)? {
            refs.push(t);
        }
    }
    let mut tensors = HashMap::with_capacity(refs.len());
    for t in &refs {
        let tensor = read_tensor(&mut zip, file_len, t)?;
        tensors.insert(t.name.clone(), tensor);
    }
    Ok(tensors)
}
