# The PyTorch peer of sparta's default model (configs/default.toml): 6 layers, d_model 256,
# 4 heads, RoPE (pairs 2i, 2i+1), RMSNorm, Mix-LN (first 2 layers Post-LN), SwiGLU 683, untied
# head, vocab 4096, batch 16 x 128, AdamW. Measures training tokens/s on the GPU in fp32 (TF32
# off: sparta's GPU path is fp32 without TF32) and with bf16 autocast, both eager, plus fp32
# under torch.compile. Run by tests/gpu/run-on-device.sh in the same call as sparta's GPU runs.
import json, os, time
import torch, torch.nn as nn, torch.nn.functional as F

L, C, H, FF, V, T, B, POST = 6, 256, 4, 683, 4096, 128, 16, 2
dev = 'cuda'


def rope(x, theta=10000.0):  # x [B, H, T, D]
    D = x.shape[-1]
    inv = theta ** (-torch.arange(0, D, 2, device=x.device, dtype=torch.float64) / D)
    ang = torch.arange(x.shape[2], device=x.device, dtype=torch.float64)[:, None] * inv
    c, s = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), -1).flatten(-2)


class Block(nn.Module):
    def __init__(s, post):
        super().__init__()
        s.post = post
        s.na, s.nf = nn.RMSNorm(C, eps=1e-6), nn.RMSNorm(C, eps=1e-6)
        s.qkv, s.proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        s.fc, s.out = nn.Linear(C, 2 * FF, bias=False), nn.Linear(FF, C, bias=False)

    def attn(s, x):
        q, k, v = s.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        return s.proj(o.transpose(1, 2).reshape(B, T, C))

    def ffn(s, x):
        g, u = s.fc(x).chunk(2, -1)
        return s.out(F.silu(g) * u)

    def forward(s, x):
        if s.post:
            u = s.na(x + s.attn(x))
            return s.nf(u + s.ffn(u))
        u = x + s.attn(s.na(x))
        return u + s.ffn(s.nf(u))


class Model(nn.Module):
    def __init__(s):
        super().__init__()
        s.wte = nn.Embedding(V, C)
        s.blocks = nn.ModuleList(Block(l < POST) for l in range(L))
        s.fin = nn.RMSNorm(C, eps=1e-6)
        s.head = nn.Linear(C, V, bias=False)

    def forward(s, idx, tgt):
        x = s.wte(idx)
        for b in s.blocks:
            x = b(x)
        return F.cross_entropy(s.head(s.fin(x)).float().view(-1, V), tgt.view(-1))


def bench(name, dtype=None, compile_=False, steps=30):
    torch.manual_seed(0)
    m = Model().to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.1, fused=True)
    f = torch.compile(m) if compile_ else m
    x = torch.randint(0, V, (B, T), device=dev)
    y = torch.randint(0, V, (B, T), device=dev)

    def step():
        with torch.autocast('cuda', dtype, enabled=dtype is not None):
            loss = f(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    params = sum(p.numel() for p in m.parameters())
    r = {'tokens_per_s': B * T / dt, 'step_ms': dt * 1e3, 'params': params}
    print(name, json.dumps(r), flush=True)
    return r


torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
res = {'fp32_eager': bench('fp32_eager'), 'bf16_autocast_eager': bench('bf16_eager', torch.bfloat16)}
try:
    res['fp32_compiled'] = bench('fp32_compiled', compile_=True)
except Exception as e:  # compile needs a working Triton toolchain; report, don't fail the run
    res['fp32_compiled'] = f'error: {type(e).__name__}: {e}'[:300]
json.dump(res, open(os.path.join(os.environ.get('OUT', '/tmp'), 'peer_same_model.json'), 'w'), indent=1)
