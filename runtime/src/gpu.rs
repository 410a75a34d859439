//! The GPU backend: a loss compiled once to WGSL (`compiler::wgsl`) and to one compute pipeline
//! per kernel on a wgpu device, then run many times.
//!
//! Any adapter will do: a real GPU, or on a machine without one Mesa's software Vulkan driver
//! (lavapipe). The device is opened once per process and shared. Inputs are checked against
//! the loss's signature by [`crate::bind`] and converted as for the CPU backend (ints must fit
//! in 32 bits); every gather and literal index is checked by the shader, which records the
//! first index out of range instead of reading it, and the run then fails with the message the
//! CPU backend gives. Values are f32; results come back as f64 for comparison with the
//! interpreter.

use crate::bind::Bound;
use crate::{Data, Outputs, RunError};
use compiler::ir::{DType, DefId, DefKind, InputId, Loss, Tensor};
use compiler::wgsl::{self, Binding, Shader, Work};
use std::sync::OnceLock;

/// Set (to anything but `0`) to make tests fail instead of skip when no adapter exists.
pub const REQUIRE_ENV: &str = "LOSSC_REQUIRE_GPU";

/// What to install when no adapter is found.
pub const INSTALL_HINT: &str = "install a GPU driver with Vulkan, Metal or DirectX 12 support; \
on Linux without a GPU, Mesa's software Vulkan driver works: \
`apt-get install mesa-vulkan-drivers libvulkan1` (Debian/Ubuntu)";

/// Checks WGSL text with naga (parse and validate), with no device: the message on failure.
pub fn validate(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    Ok(())
}

/// The shared device.
struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
}

static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();

/// Opens the device once: any adapter (Vulkan first, as `WGPU_BACKEND` allows), with the
/// adapter's own limits.
fn gpu() -> Result<&'static Gpu, RunError> {
    GPU.get_or_init(open)
        .as_ref()
        .map_err(|e| RunError::new(e.clone()))
}

fn open() -> Result<Gpu, String> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = wgpu::Backends::all();
    }
    let instance = wgpu::Instance::new(desc);
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        ..Default::default()
    };
    let adapter = pollster::block_on(instance.request_adapter(&options))
        .map_err(|e| format!("the GPU backend found no GPU adapter ({e}): {INSTALL_HINT}"))?;
    let info = adapter.get_info();
    if !adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
    {
        return Err(format!(
            "the GPU adapter `{}` cannot run compute shaders: {INSTALL_HINT}",
            info.name
        ));
    }
    let limits = adapter.limits();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("lossc"),
        required_limits: limits.clone(),
        ..Default::default()
    }))
    .map_err(|e| format!("cannot open the GPU adapter `{}`: {e}", info.name))?;
    // Errors are caught by error scopes around each step; nothing is left to the default
    // handler, which would panic.
    device.on_uncaptured_error(std::sync::Arc::new(|_e: wgpu::Error| {}));
    Ok(Gpu {
        device,
        queue,
        info,
        limits,
    })
}

/// A line describing the adapter the backend uses (name, kind, driver, backend).
pub fn adapter_description() -> Result<String, RunError> {
    let g = gpu()?;
    let i = &g.info;
    Ok(format!(
        "{} ({:?}, {:?}{})",
        i.name,
        i.device_type,
        i.backend,
        if i.driver_info.is_empty() {
            String::new()
        } else {
            format!(", {}", i.driver_info)
        }
    ))
}

/// True when an adapter exists; false (and nothing else happens) when none does.
pub fn available() -> bool {
    gpu().is_ok()
}

/// Runs `f` inside a validation and out-of-memory error scope.
fn scoped<T>(g: &Gpu, what: &str, f: impl FnOnce() -> T) -> Result<T, RunError> {
    let oom = g.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let valid = g.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    let v = pollster::block_on(valid.pop());
    let o = pollster::block_on(oom.pop());
    match v.or(o) {
        None => Ok(out),
        Some(e) => Err(RunError::new(format!("GPU error while {what}: {e}"))),
    }
}

/// A loss compiled to WGSL with one pipeline per kernel.
pub struct GpuLoss {
    program: Loss,
    shader: Shader,
    /// Per kernel: the layout of the bindings it touches, and its pipeline.
    kernels: Vec<(wgpu::BindGroupLayout, wgpu::ComputePipeline)>,
    /// The buffers and bind groups of the last run, reused while the sizes stay the same.
    resident: std::sync::Mutex<Option<Resident>>,
    rows: Rows,
}

/// How a definition whose elements need reductions is computed (see
/// [`compiler::wgsl::Work::Rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rows {
    /// One workgroup per element where [`compiler::wgsl::prefer_rows`] says so (long
    /// reductions, few elements), one invocation per element elsewhere.
    #[default]
    Auto,
    /// Always one workgroup per element (where the sizes allow it).
    Always,
    /// Always one invocation per element.
    Never,
}

/// Device memory for one set of dimension sizes: a buffer per binding, a bind group per
/// kernel.
struct Resident {
    dims: Vec<usize>,
    buffers: Vec<wgpu::Buffer>,
    groups: Vec<wgpu::BindGroup>,
}

/// The layout entry of binding `index`.
fn layout_entry(index: u32, b: Binding) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding: index,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: match b {
                Binding::Params => wgpu::BufferBindingType::Uniform,
                Binding::Input(_) => wgpu::BufferBindingType::Storage { read_only: true },
                _ => wgpu::BufferBindingType::Storage { read_only: false },
            },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl GpuLoss {
    /// Emits and compiles `program` (a loss, or a gradient program from `compiler::grad`).
    pub fn compile(program: &Loss) -> Result<GpuLoss, RunError> {
        crate::limits::check_code_size(program)?;
        let shader = wgsl::emit(program);
        validate(&shader.source).map_err(|e| {
            RunError::new(format!(
                "internal error: lossc emitted invalid WGSL for `{}`:\n{e}",
                program.name
            ))
        })?;
        let g = gpu()?;
        let limit = g.limits.max_storage_buffers_per_shader_stage;
        if let Some(k) = shader
            .kernels
            .iter()
            .find(|k| k.bindings.len() as u32 - 1 > limit)
        {
            return Err(RunError::new(format!(
                "the kernel `{}` of `{}` needs {} storage buffers, more than the {limit} the GPU adapter `{}` allows per shader",
                k.entry,
                program.name,
                k.bindings.len() - 1,
                g.info.name
            )));
        }
        scoped(g, "compiling the shaders", || {
            let module = g.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&program.name),
                source: wgpu::ShaderSource::Wgsl(shader.source.as_str().into()),
            });
            shader
                .kernels
                .iter()
                .map(|k| {
                    let entries: Vec<wgpu::BindGroupLayoutEntry> = k
                        .bindings
                        .iter()
                        .map(|&b| layout_entry(b, shader.bindings[b as usize]))
                        .collect();
                    let layout =
                        g.device
                            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                                label: Some(&k.entry),
                                entries: &entries,
                            });
                    let pipeline_layout =
                        g.device
                            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                                label: Some(&k.entry),
                                bind_group_layouts: &[Some(&layout)],
                                immediate_size: 0,
                            });
                    let pipeline =
                        g.device
                            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                                label: Some(&k.entry),
                                layout: Some(&pipeline_layout),
                                module: &module,
                                entry_point: Some(&k.entry),
                                compilation_options: Default::default(),
                                cache: None,
                            });
                    (layout, pipeline)
                })
                .collect::<Vec<_>>()
        })
        .map(|kernels| GpuLoss {
            program: program.clone(),
            shader,
            kernels,
            resident: Default::default(),
            rows: Rows::Auto,
        })
    }

    /// Chooses how definitions that need reductions are computed (the results agree either
    /// way to rounding; the tests run both).
    pub fn set_rows(&mut self, rows: Rows) {
        self.rows = rows;
    }

    /// Whether the row kernel over `dims` with reductions over `terms` runs (instead of the
    /// elementwise kernel before it) at these sizes.
    fn use_rows(&self, bound: &Bound, dims: &[usize], terms: &[Vec<usize>]) -> bool {
        let n = elements(bound, dims);
        let longest = terms.iter().map(|t| elements(bound, t)).max().unwrap_or(0);
        let fits = n <= u64::from(wgsl::MAX_GROUPS_X) * 65535 && longest <= u64::from(u32::MAX);
        fits && match self.rows {
            Rows::Auto => wgsl::prefer_rows(n, longest),
            Rows::Always => true,
            Rows::Never => false,
        }
    }

    /// The compiled program.
    pub fn program(&self) -> &Loss {
        &self.program
    }

    /// The WGSL the pipelines were built from.
    pub fn shader(&self) -> &Shader {
        &self.shader
    }

    /// Runs on bound inputs: the outputs, and the values (as f64) of the definitions in
    /// `read`, in that order.
    pub fn run(&self, bound: &Bound, read: &[DefId]) -> Result<(Outputs, Vec<Vec<f64>>), RunError> {
        let loss = &self.program;
        crate::interp::check_memory(loss, bound)?;
        let g = gpu()?;
        let def_sizes = self.check_sizes(g, bound)?;
        // Inputs in the element types the shader reads: f32, i32, u32.
        let inputs = loss
            .inputs
            .iter()
            .zip(&bound.inputs)
            .map(|(input, t)| input_data(input, t))
            .collect::<Result<Vec<_>, _>>()?;
        let metrics: Vec<DefId> = loss
            .defs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.kind == DefKind::Metric)
            .map(|(k, _)| k)
            .collect();
        let at = |b: Binding| {
            self.shader
                .bindings
                .iter()
                .position(|x| *x == b)
                .expect("every binding is declared")
        };
        // What comes back: the error record, the loss, the metrics, the requested definitions.
        let mut wanted = vec![(at(Binding::Errors), 20), (at(Binding::Result), 4)];
        for &d in metrics.iter().chain(read) {
            wanted.push((at(Binding::Def(d)), def_sizes[d] * 4));
        }
        let mut resident = self
            .resident
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let parts = scoped(g, "running the shaders", || {
            let r = match resident.take() {
                Some(r) if r.dims == bound.dims => r,
                _ => {
                    let buffers = self.buffers(g, &def_sizes, &inputs);
                    let groups = self.bind_groups(g, &buffers);
                    Resident {
                        dims: bound.dims.clone(),
                        buffers,
                        groups,
                    }
                }
            };
            self.upload(g, bound, &r.buffers, &inputs);
            let mut encoder = g.device.create_command_encoder(&Default::default());
            self.dispatch(bound, &r.groups, &mut encoder);
            let parts = read_back(g, encoder, &r.buffers, &wanted);
            *resident = Some(r);
            parts
        });
        let parts = match parts {
            Ok(p) => p?,
            Err(e) => {
                // A failed run leaves nothing behind to reuse.
                *resident = None;
                return Err(e);
            }
        };
        drop(resident);
        let errors = &parts[0];
        if errors[0] != 0 {
            return Err(self.out_of_range(errors, bound));
        }
        let as_f64 =
            |w: &[u32]| -> Vec<f64> { w.iter().map(|&b| f64::from(f32::from_bits(b))).collect() };
        let metric_values = metrics
            .iter()
            .zip(&parts[2..])
            .map(|(&d, w)| (loss.defs[d].name.clone(), as_f64(w)[0]))
            .collect();
        Ok((
            Outputs {
                loss: as_f64(&parts[1])[0],
                metrics: metric_values,
            },
            parts[2 + metrics.len()..]
                .iter()
                .map(|w| as_f64(w))
                .collect(),
        ))
    }

    /// Every definition's element count, after checking that each input and definition fits
    /// one binding of the adapter and each two-level reduction counts its terms in 32 bits.
    fn check_sizes(&self, g: &Gpu, bound: &Bound) -> Result<Vec<u64>, RunError> {
        let loss = &self.program;
        let max_binding = g
            .limits
            .max_storage_buffer_binding_size
            .min(g.limits.max_buffer_size);
        let fits = |name: &str, n: u64| -> Result<(), RunError> {
            if n * 4 > max_binding || n > i32::MAX as u64 {
                return Err(RunError::new(format!(
                    "`{name}` would take {} MiB on the GPU, more than the {} MiB one buffer may bind on `{}`",
                    (n * 4).div_ceil(1 << 20),
                    max_binding >> 20,
                    g.info.name
                )));
            }
            Ok(())
        };
        for (input, t) in loss.inputs.iter().zip(&bound.inputs) {
            fits(&input.name, t.data.len() as u64)?;
        }
        let mut sizes = vec![];
        for def in &loss.defs {
            let dims: Vec<usize> = def.indices.iter().map(|&v| loss.vars[v].dim).collect();
            let n = elements(bound, &dims);
            fits(&def.name, n)?;
            sizes.push(n);
        }
        for k in &self.shader.kernels {
            if let Work::Partial { dims, .. } = &k.work {
                let n = elements(bound, dims);
                if n > u64::from(u32::MAX) {
                    return Err(RunError::new(format!(
                        "a reduction of `{}` would have {n} terms at these sizes, more than the GPU backend counts (2^32 - 1)",
                        loss.name
                    )));
                }
            }
        }
        Ok(sizes)
    }

    /// One buffer per binding, sized for these inputs and definitions.
    fn buffers(&self, g: &Gpu, def_sizes: &[u64], inputs: &[Vec<u8>]) -> Vec<wgpu::Buffer> {
        let loss = &self.program;
        let create = |label: &str, bytes: u64, usage: wgpu::BufferUsages| {
            g.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4).div_ceil(4) * 4,
                usage,
                mapped_at_creation: false,
            })
        };
        let storage = |label: &str, bytes: u64| {
            create(
                label,
                bytes,
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            )
        };
        let partials = self.shader.reductions as u64 * u64::from(wgsl::MAX_PARTIALS) * 4;
        self.shader
            .bindings
            .iter()
            .map(|b| match b {
                Binding::Params => create(
                    "params",
                    wgsl::params_bytes(&vec![0; loss.dims.len()], &vec![0.0; loss.hypers.len()])
                        .len() as u64,
                    wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                ),
                Binding::Errors => storage("errors", 20),
                Binding::Result => storage("result", 4),
                Binding::Reduced => storage("reduced", self.shader.reductions as u64 * 4),
                Binding::Partials => storage("partials", partials),
                Binding::PartialCounts => storage("partial_counts", partials),
                Binding::Input(i) => storage(&loss.inputs[*i].name, inputs[*i].len() as u64),
                Binding::Def(d) => storage(&loss.defs[*d].name, def_sizes[*d] * 4),
            })
            .collect()
    }

    /// Writes `params` and the inputs, and clears `errors`, before the next submission.
    fn upload(&self, g: &Gpu, bound: &Bound, buffers: &[wgpu::Buffer], inputs: &[Vec<u8>]) {
        for (b, buf) in self.shader.bindings.iter().zip(buffers) {
            let bytes: &[u8] = match b {
                Binding::Params => &wgsl::params_bytes(&bound.dims, &bound.hypers),
                Binding::Errors => &[0; 20],
                Binding::Input(i) => &inputs[*i],
                _ => continue,
            };
            if !bytes.is_empty() {
                g.queue.write_buffer(buf, 0, bytes);
            }
        }
    }

    /// A bind group per kernel, of the buffers it touches.
    fn bind_groups(&self, g: &Gpu, buffers: &[wgpu::Buffer]) -> Vec<wgpu::BindGroup> {
        self.shader
            .kernels
            .iter()
            .zip(&self.kernels)
            .map(|(k, (layout, _))| {
                let entries: Vec<wgpu::BindGroupEntry> = k
                    .bindings
                    .iter()
                    .map(|&b| wgpu::BindGroupEntry {
                        binding: b,
                        resource: buffers[b as usize].as_entire_binding(),
                    })
                    .collect();
                g.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&k.entry),
                    layout,
                    entries: &entries,
                })
            })
            .collect()
    }

    /// Every kernel in order, in one compute pass (wgpu orders the dispatches' reads after
    /// the writes before them); elementwise kernels over no elements are skipped.
    fn dispatch(
        &self,
        bound: &Bound,
        groups: &[wgpu::BindGroup],
        encoder: &mut wgpu::CommandEncoder,
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&self.program.name),
            timestamp_writes: None,
        });
        let kernels = &self.shader.kernels;
        for (k, ((kernel, (_, pipeline)), group)) in
            kernels.iter().zip(&self.kernels).zip(groups).enumerate()
        {
            let (x, y) = match &kernel.work {
                Work::Elements(dims) => {
                    // The row kernel after it may run instead.
                    if let Some(Work::Rows { dims, terms }) = kernels.get(k + 1).map(|k| &k.work)
                        && self.use_rows(bound, dims, terms)
                    {
                        continue;
                    }
                    match elements(bound, dims) {
                        0 => continue,
                        n => wgsl::element_groups(n),
                    }
                }
                Work::Rows { dims, terms } => {
                    if !self.use_rows(bound, dims, terms) {
                        continue;
                    }
                    match elements(bound, dims) {
                        0 => continue,
                        n => wgsl::row_groups(n),
                    }
                }
                Work::Partial { dims, .. } => (wgsl::reduction_groups(elements(bound, dims)), 1),
                Work::Fold | Work::Single => (1, 1),
            };
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
    }

    fn out_of_range(&self, error: &[u32], bound: &Bound) -> RunError {
        let loss = &self.program;
        let (k, pos, value, is_def) = (
            error[1] as usize,
            error[2] as usize,
            error[3] as i32,
            error[4],
        );
        let t = if is_def == 1 {
            Tensor::Def(k)
        } else {
            Tensor::Input(k)
        };
        let known = match t {
            Tensor::Def(d) => d < loss.defs.len(),
            Tensor::Input(i) => i < loss.inputs.len(),
        };
        let Some(dim) = known
            .then(|| loss.shape_of(t))
            .and_then(|s| s.get(pos).copied())
        else {
            return RunError::new(format!(
                "index out of range in `{}` (the GPU reported an unknown place: {error:?})",
                loss.name
            ));
        };
        RunError::new(format!(
            "index out of range: position {pos} of `{}` (dimension `{}`, size {}) got {value}",
            loss.tensor_name(t),
            loss.dims[dim],
            bound.dims[dim],
        ))
    }
}

/// The number of elements over these dimensions.
fn elements(bound: &Bound, dims: &[usize]) -> u64 {
    dims.iter().map(|&d| bound.dims[d] as u64).product()
}

/// Copies `(binding, bytes)` of each wanted buffer into one staging buffer after the work in
/// `encoder`, submits, waits, and returns each as 32-bit words.
fn read_back(
    g: &Gpu,
    mut encoder: wgpu::CommandEncoder,
    buffers: &[wgpu::Buffer],
    wanted: &[(usize, u64)],
) -> Result<Vec<Vec<u32>>, RunError> {
    let total: u64 = wanted.iter().map(|(_, n)| n.div_ceil(4) * 4).sum();
    let staging = g.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read back"),
        size: total.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut offset = 0;
    let mut spans = vec![];
    for &(binding, bytes) in wanted {
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(&buffers[binding], 0, &staging, offset, bytes);
        }
        spans.push((offset as usize / 4, bytes as usize / 4));
        offset += bytes.div_ceil(4) * 4;
    }
    g.queue.submit([encoder.finish()]);
    let slice = staging.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    g.device
        .poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        })
        .map_err(|e| RunError::new(format!("the GPU did not finish: {e}")))?;
    let words: Vec<u32> = match slice.get_mapped_range() {
        Ok(view) => bytemuck::cast_slice::<u8, u32>(&view).to_vec(),
        Err(e) => {
            return Err(RunError::new(format!(
                "cannot read the results back from the GPU: {e}"
            )));
        }
    };
    staging.unmap();
    Ok(spans
        .into_iter()
        .map(|(start, n)| words[start..start + n].to_vec())
        .collect())
}

/// An input's elements in the type the shader reads.
fn input_data(input: &compiler::ir::Input, t: &crate::Tensor) -> Result<Vec<u8>, RunError> {
    Ok(match (&t.data, input.dtype) {
        (Data::F64(v), DType::Float) => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        (Data::F32(v), DType::Float) => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        (Data::I64(v), DType::Int) => {
            let mut out = Vec::with_capacity(v.len() * 4);
            for (k, &x) in v.iter().enumerate() {
                let x = i32::try_from(x).map_err(|_| {
                    RunError::new(format!(
                        "input `{}` holds {x} at {:?}, beyond the 32-bit integers the GPU backend takes",
                        input.name,
                        crate::bind::position(&t.shape, k)
                    ))
                })?;
                out.extend(x.to_le_bytes());
            }
            out
        }
        (Data::Bool(v), DType::Bool) => {
            v.iter().flat_map(|&b| u32::from(b).to_le_bytes()).collect()
        }
        (data, _) => {
            return Err(RunError::new(format!(
                "input `{}` holds {} values but the loss declares {}",
                input.name,
                data.type_name(),
                input.dtype.name()
            )));
        }
    })
}

/// Compiles `loss`'s stabilised gradient program (the one the CPU backend runs) to WGSL and
/// runs it: the GPU counterpart of [`crate::eval_with_grad`].
pub fn eval_with_grad(
    loss: &Loss,
    bound: &Bound,
    wrt: &[InputId],
) -> Result<(Outputs, crate::interp::Gradients), RunError> {
    let compiled = GpuLoss::compile(&crate::cpu::gradient_program(loss, wrt))?;
    let outputs: Vec<(InputId, DefId)> = compiler::grad::gradient_outputs(compiled.program())
        .into_iter()
        .filter(|(i, _)| wrt.contains(i))
        .collect();
    let read: Vec<DefId> = outputs.iter().map(|&(_, d)| d).collect();
    let (out, values) = compiled.run(bound, &read)?;
    let grads = outputs
        .into_iter()
        .zip(values)
        .map(|((i, _), v)| (i, v))
        .collect();
    Ok((out, grads))
}

/// Evaluates the WGSL expression `expr` (of the f32s `x` and `y`, with lossc's math library,
/// `compiler::wgsl::math`, in scope) on the device at each pair `(xs[k], ys[k])`: how the
/// library's accuracy is measured on a real adapter.
pub fn eval_math(expr: &str, xs: &[f32], ys: &[f32]) -> Result<Vec<f32>, RunError> {
    let n = xs.len().min(ys.len());
    let source = format!(
        "{}\n@group(0) @binding(0) var<storage, read> xs: array<f32>;\n\
         @group(0) @binding(1) var<storage, read> ys: array<f32>;\n\
         @group(0) @binding(2) var<storage, read_write> out: array<f32>;\n\
         @compute @workgroup_size(64)\n\
         fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{\n    \
         let k = gid.x;\n    \
         if (k >= arrayLength(&out)) {{ return; }}\n    \
         let x = xs[k];\n    \
         let y = ys[k];\n    \
         out[k] = {expr};\n}}\n",
        wgsl::math::SOURCE
    );
    validate(&source).map_err(RunError::new)?;
    let g = gpu()?;
    let device = &g.device;
    let bytes = (n.max(1) * 4) as u64;
    scoped(g, "evaluating a math expression", || {
        let buffer = |label: &str, data: Option<&[f32]>, usage: wgpu::BufferUsages| {
            let b = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            });
            if let Some(d) = data
                && !d.is_empty()
            {
                g.queue.write_buffer(&b, 0, bytemuck::cast_slice(&d[..n]));
            }
            b
        };
        let input = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let bx = buffer("xs", Some(xs), input);
        let by = buffer("ys", Some(ys), input);
        let out = buffer(
            "out",
            None,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let staging = buffer(
            "staging",
            None,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("math"),
            source: wgpu::ShaderSource::Wgsl(source.as_str().into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("math"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("math"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: bx.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: by.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: out.as_entire_binding(),
                },
            ],
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            let (x, y) = wgsl::element_groups(n as u64);
            pass.dispatch_workgroups(x * y, 1, 1);
        }
        encoder.copy_buffer_to_buffer(&out, 0, &staging, 0, bytes);
        g.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        let _ = device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        });
        let values = match slice.get_mapped_range() {
            Ok(view) => bytemuck::cast_slice::<u8, f32>(&view)[..n].to_vec(),
            Err(e) => {
                return Err(RunError::new(format!(
                    "cannot read the results back from the GPU: {e}"
                )));
            }
        };
        staging.unmap();
        Ok(values)
    })?
}
