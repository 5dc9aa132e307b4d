"""The trainable T5 LUMEN reader: a batched PyTorch T5 (Hugging Face layout and tensor names, the
math of tests/reference/t5_reference.py) split as the engine splits it (engine/lumen.h), with an
optional compression layer (PQ or BTR) between the memory encoder and the live encoder.

Computation for one question Q with k passages P_1..P_k (ids as prepare_data.py makes them):
  M = num_layers - round(alpha * num_layers) memory layers (alpha = 1: FiD, M = 0)
  mem_q = encoder layers [0, M) over Q alone              (positions 0..|Q|-1)
  mem_i = compress(encoder layers [0, M) over P_i alone)  (positions 0..|P_i|-1)
  h_i   = final_norm(encoder layers [M, L) over [mem_q ; mem_i])  (positions 0..|Q|+|P_i|-1)
  logits = decoder(cross-attending the concatenation [h_1 ; ... ; h_k])
exactly LumenModel::LiveEncode + T5Generate in the engine (the final layer norm sits after the live
layers; memory is the residual stream before any norm; the question memory is never compressed).

Batches are padded: a [B, k] batch of passages runs as B*k rows. Padding sits at the end of the
memory-encoder rows and between question and passage in the live rows; every row carries explicit
token positions for the relative attention bias and a key mask, so padding never changes a real
token's value (the model computes the same numbers as the unpadded engine, up to f32 rounding).

Parameters live in a ParameterDict under the Hugging Face names with "." replaced by "__"
(ParameterDict keys cannot hold dots); hf_state_dict() gives the HF names back.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "reference"))
from t5_reference import bucket  # noqa: E402  (HF _relative_position_bucket)


def default_config(**overrides):
    c = dict(
        model_type="t5",
        architectures=["T5ForConditionalGeneration"],
        d_model=256,
        d_kv=64,
        num_heads=4,
        d_ff=1024,
        num_layers=6,
        num_decoder_layers=4,
        vocab_size=8000,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        is_encoder_decoder=True,
    )
    c.update(overrides)
    return c


def memory_layers(config, alpha):
    """Engine rule (LumenModel::Create): M = L - lround(alpha * L), halves rounded up."""
    L = config["num_layers"]
    return L - int(math.floor(alpha * L + 0.5))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class PQLayer(nn.Module):
    """MEMORY-VQ product quantisation of memory vectors (Zemlyanskiy et al. 2023).

    d is split into g subspaces of d/g dims; each has C centroids. Forward replaces every vector
    by its nearest centroids (straight-through: the gradient passes to the input unchanged; no
    commitment loss). In training mode the codebooks follow the assigned vectors as an
    exponential moving average (decay), are initialised by k-means++ seeding on the first batch,
    and a code whose EMA usage falls below reset_threshold is re-seeded from a random vector of
    the current batch. Codebooks are buffers [g, C, d/g] f32, the layout of storage's PQ codec
    (ImportPqCodebooks); d must be a multiple of g (no padding here).
    """

    def __init__(self, d, g, C, decay=0.99, reset_threshold=0.01, eps=1e-5):
        super().__init__()
        assert d % g == 0, (d, g)
        self.d, self.g, self.C, self.dsub = d, g, C, d // g
        self.decay, self.reset_threshold, self.eps = decay, reset_threshold, eps
        self.register_buffer("codebooks", torch.zeros(g, C, self.dsub))
        self.register_buffer("ema_count", torch.ones(g, C))
        self.register_buffer("ema_sum", torch.zeros(g, C, self.dsub))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.resets = 0  # codes re-seeded since construction (logged by the trainer)

    def assign(self, x):
        """x [n, g, dsub] -> ids [n, g] of the nearest centroid per subspace."""
        xs = x.transpose(0, 1)  # [g, n, dsub]
        dist = (xs.pow(2).sum(-1, keepdim=True) - 2 * xs @ self.codebooks.transpose(1, 2) +
                self.codebooks.pow(2).sum(-1)[:, None, :])
        return dist.argmin(-1).transpose(0, 1)

    def decode(self, ids):
        """ids [n, g] -> [n, g, dsub]."""
        return self.codebooks[torch.arange(self.g, device=ids.device)[None, :], ids]

    @torch.no_grad()
    def kmeanspp_init(self, x, generator=None):
        """k-means++ seeding per subspace from x [n, g, dsub] (n >= C)."""
        n = x.shape[0]
        assert n >= self.C, f"PQ init needs >= C = {self.C} vectors, got {n}"
        for s in range(self.g):
            xs = x[:, s]
            first = torch.randint(n, (1,), generator=generator)
            cent = [xs[first[0]]]
            d2 = (xs - cent[0]).pow(2).sum(-1)
            for _ in range(1, self.C):
                p = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
                j = torch.multinomial(p, 1, generator=generator)[0]
                cent.append(xs[j])
                d2 = torch.minimum(d2, (xs - xs[j]).pow(2).sum(-1))
            self.codebooks[s] = torch.stack(cent)
        self.ema_sum.copy_(self.codebooks)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def ema_update(self, x, ids):
        n = x.shape[0]
        onehot = F.one_hot(ids, self.C).to(x.dtype)  # [n, g, C]
        counts = onehot.sum(0)  # [g, C]
        sums = torch.einsum("ngc,ngd->gcd", onehot, x)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum(-1, keepdim=True)
        smoothed = (self.ema_count + self.eps) / (total + self.C * self.eps) * total
        self.codebooks.copy_(self.ema_sum / smoothed[..., None])
        # Dead codes: EMA usage below threshold x the uniform share -> re-seed from the batch.
        dead = self.ema_count < self.reset_threshold * (n / self.C)
        if dead.any():
            for s, c in dead.nonzero().tolist():
                v = x[torch.randint(n, (1,)).item(), s]
                self.codebooks[s, c] = v
                self.ema_sum[s, c] = v
                self.ema_count[s, c] = 1.0
                self.resets += 1

    def forward(self, x, mask):
        """x [..., d], mask [...] bool (True = real token; only those train the codebooks)."""
        shape = x.shape
        flat = x.reshape(-1, self.g, self.dsub)
        real = flat[mask.reshape(-1)].detach()
        if self.training and not bool(self.initialised):
            self.kmeanspp_init(real)
        ids = self.assign(flat.detach())
        if self.training:
            self.ema_update(real, ids[mask.reshape(-1)])
            ids = self.assign(flat.detach())
        q = self.decode(ids).reshape(shape)
        return x + (q - x).detach()


class BTRLayer(nn.Module):
    """BTR-style calibrated 1-bit memory (Cao et al. 2024), as storage's btr codec decodes it
    (kernels/btr_kernels.h):  b = [x > mu],  alpha = sum_j a_j |x_j - mu_j| / sum_j a_j^2,
    x^ = mu + alpha * a * (2b - 1). mu_j = mean x_j, a_j = mean |x_j - mu_j| are calibration
    statistics, tracked here as an EMA over training batches (the store recalibrates on its own
    sample). Straight-through: the gradient of x^ w.r.t. x is taken as the identity.
    scale_bf16 rounds alpha to bf16, as the codec stores it by default."""

    def __init__(self, d, decay=0.99, scale_bf16=True):
        super().__init__()
        self.decay, self.scale_bf16 = decay, scale_bf16
        self.register_buffer("mu", torch.zeros(d))
        self.register_buffer("a", torch.ones(d))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def calibrate(self, real):
        mu = real.mean(0)
        a = (real - mu).abs().mean(0)
        if not bool(self.initialised):
            self.mu.copy_(mu)
            self.a.copy_(a)
            self.initialised.fill_(True)
        else:
            self.mu.mul_(self.decay).add_(mu, alpha=1 - self.decay)
            self.a.mul_(self.decay).add_(a, alpha=1 - self.decay)

    def forward(self, x, mask):
        if self.training:
            self.calibrate(x.detach()[mask])
        c = x.detach() - self.mu
        alpha = (self.a * c.abs()).sum(-1, keepdim=True) / self.a.pow(2).sum().clamp_min(1e-30)
        if self.scale_bf16:
            alpha = alpha.to(torch.bfloat16).to(x.dtype)
        q = self.mu + alpha * self.a * torch.where(c > 0, 1.0, -1.0)
        return x + (q - x).detach()


def parse_mimetic_flag(text):
    """"QK,OV,NOISE" (the --mimetic-init flag) -> (qk, ov, noise) floats for
    LumenT5.mimetic_init; argparse.ArgumentTypeError naming the text otherwise (use as type=)."""
    parts = text.split(",")
    try:
        values = tuple(float(x) for x in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not 0.0 <= values[2] <= 1.0:
        raise argparse.ArgumentTypeError(
            f"expected QK,OV,NOISE (three numbers, NOISE in [0, 1]), got '{text}'")
    return values


class LumenT5(nn.Module):
    def __init__(self, config, alpha=1.0 / 3.0, compression=None):
        """compression: None, ("pq", g, C) or ("btr",)."""
        super().__init__()
        self.c = c = config
        self.alpha = alpha
        self.M = memory_layers(c, alpha)
        self.H, self.dk = c["num_heads"], c["d_kv"]
        self.gated = c["feed_forward_proj"].startswith("gated")
        self.p = nn.ParameterDict()
        self._init_weights()
        self.compress = None
        if compression is not None and compression[0] == "pq":
            self.compress = PQLayer(c["d_model"], compression[1], compression[2])
        elif compression is not None and compression[0] == "btr":
            self.compress = BTRLayer(c["d_model"])

    # ---- parameters ---------------------------------------------------------------------------

    def _add(self, name, t):
        self.p[name.replace(".", "__")] = nn.Parameter(t)

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def _init_weights(self):
        """HF T5 initialisation scales (T5PreTrainedModel._init_weights), lm_head N(0, d^-1/2)."""
        c = self.c
        d, H, dk, ff, V = c["d_model"], self.H, self.dk, c["d_ff"], c["vocab_size"]
        inner = H * dk

        def lin(name, out_f, in_f, std):
            self._add(name, torch.randn(out_f, in_f) * std)

        self._add("shared.weight", torch.randn(V, d))
        for stack, n_layers in (("encoder", c["num_layers"]), ("decoder", c["num_decoder_layers"])):
            for i in range(n_layers):
                p = f"{stack}.block.{i}.layer."
                attns = ["0.SelfAttention."]
                if stack == "decoder":
                    attns.append("1.EncDecAttention.")
                for a in attns:
                    lin(p + a + "q.weight", inner, d, (d * dk) ** -0.5)
                    lin(p + a + "k.weight", inner, d, d ** -0.5)
                    lin(p + a + "v.weight", inner, d, d ** -0.5)
                    lin(p + a + "o.weight", d, inner, inner ** -0.5)
                if i == 0:
                    self._add(p + "0.SelfAttention.relative_attention_bias.weight",
                              torch.randn(c["relative_attention_num_buckets"], H) * d ** -0.5)
                f = 2 if stack == "decoder" else 1
                for j in range(f + 1):
                    self._add(p + f"{j}.layer_norm.weight", torch.ones(d))
                if self.gated:
                    lin(p + f"{f}.DenseReluDense.wi_0.weight", ff, d, d ** -0.5)
                    lin(p + f"{f}.DenseReluDense.wi_1.weight", ff, d, d ** -0.5)
                else:
                    lin(p + f"{f}.DenseReluDense.wi.weight", ff, d, d ** -0.5)
                lin(p + f"{f}.DenseReluDense.wo.weight", d, ff, ff ** -0.5)
            self._add(f"{stack}.final_layer_norm.weight", torch.ones(d))
        if not c["tie_word_embeddings"]:
            lin("lm_head.weight", V, d, d ** -0.5)

    @torch.no_grad()
    def mimetic_init(self, qk=1.0, ov=1.0, noise=0.3,
                     kinds=("encoder_self", "decoder_self", "cross")):
        """Training-only re-initialisation of every attention layer so that, at step 0, it already
        matches tokens with themselves and copies what it attends to (mimetic initialisation,
        Trockman & Kolter 2023): W_q = W_k = sqrt(qk / dk) R (per head: a query scores a key of
        the same content ~qk higher than an unrelated one, for unit-RMS inputs) and
        W_o W_v = ov I (W_v = R', W_o = ov R'^T), with R, R' random orthogonal, each mixed with
        a fraction `noise` of the standard initialisation. Find-and-copy, the step a reader must
        learn, is made of exactly these two pieces; from the standard initialisation neither our
        T5 nor torch's nn.Transformer finds them in thousands of steps (tools/train/README.md).
        The model stays a plain T5 (the engine runs it unchanged). Needs num_heads * d_kv ==
        d_model."""
        c = self.c
        d, inner = c["d_model"], self.H * self.dk
        assert inner == d, f"mimetic init needs num_heads * d_kv == d_model ({inner} vs {d})"

        def orth():
            q, r = torch.linalg.qr(torch.randn(d, d))
            return q * torch.sign(torch.diagonal(r))[None, :]

        prefixes = []
        if "encoder_self" in kinds:
            prefixes += [f"encoder.block.{i}.layer.0.SelfAttention." for i in range(c["num_layers"])]
        if "decoder_self" in kinds:
            prefixes += [f"decoder.block.{i}.layer.0.SelfAttention."
                         for i in range(c["num_decoder_layers"])]
        if "cross" in kinds:
            prefixes += [f"decoder.block.{i}.layer.1.EncDecAttention."
                         for i in range(c["num_decoder_layers"])]
        s = (qk / self.dk) ** 0.5
        for p in prefixes:
            r = orth()
            for name, target in (("q", s * r), ("k", s * r)):
                w = self.w(p + name + ".weight")
                w.copy_((1 - noise) * target + noise * w)
            r2 = orth()
            wv, wo = self.w(p + "v.weight"), self.w(p + "o.weight")
            wv.copy_((1 - noise) * r2 + noise * wv)
            wo.copy_((1 - noise) * ov * r2.T + noise * wo)

    def hf_state_dict(self):
        return {k.replace("__", "."): v.detach() for k, v in self.p.items()}

    def load_hf_state_dict(self, sd):
        for k, v in sd.items():
            self.w(k).data.copy_(v)

    def memory_parameter_names(self):
        """Parameters that determine the stored memory: the embedding and layers [0, M)."""
        names = ["shared.weight"]
        for i in range(self.M):
            names += [k.replace("__", ".") for k in self.p.keys()
                      if k.startswith(f"encoder__block__{i}__")]
        return names

    # ---- building blocks ----------------------------------------------------------------------

    def norm(self, x, name):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.w(name) * (x * torch.rsqrt(var + self.c["layer_norm_epsilon"]))

    def attn(self, x, kv, p, bias):
        """x [N, Tq, d], kv [N, Tk, d], bias broadcastable to [N, H, Tq, Tk] (masks included)."""
        N, Tq, _ = x.shape
        Tk = kv.shape[1]
        H, dk = self.H, self.dk
        q = (x @ self.w(p + "q.weight").T).view(N, Tq, H, dk).transpose(1, 2)
        k = (kv @ self.w(p + "k.weight").T).view(N, Tk, H, dk).transpose(1, 2)
        v = (kv @ self.w(p + "v.weight").T).view(N, Tk, H, dk).transpose(1, 2)
        # Contiguous q and k: torch's CPU bmm is ~2x slower on the strided views.
        s = q.contiguous() @ k.contiguous().transpose(2, 3) + bias  # unscaled: T5
        o = torch.softmax(s, -1) @ v
        return o.transpose(1, 2).reshape(N, Tq, H * dk) @ self.w(p + "o.weight").T

    def ffn(self, x, p):
        if self.gated:
            h = gelu_new(x @ self.w(p + "wi_0.weight").T) * (x @ self.w(p + "wi_1.weight").T)
        else:
            h = torch.relu(x @ self.w(p + "wi.weight").T)
        return h @ self.w(p + "wo.weight").T

    def encoder_bias(self, pos, mask):
        """pos [N, T] token positions, mask [N, T] real keys -> [N, H, T, T] bias + key mask."""
        rel = pos[:, None, :] - pos[:, :, None]
        b = bucket(rel, True, self.c["relative_attention_num_buckets"],
                   self.c["relative_attention_max_distance"])
        table = self.w("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        bias = table[b].permute(0, 3, 1, 2)
        return bias.masked_fill(~mask[:, None, None, :], float("-inf"))

    def encoder_layers(self, x, pos, mask, lo, hi):
        if lo >= hi:
            return x
        bias = self.encoder_bias(pos, mask)
        for i in range(lo, hi):
            p = f"encoder.block.{i}.layer."
            n = self.norm(x, p + "0.layer_norm.weight")
            x = x + self.attn(n, n, p + "0.SelfAttention.", bias)
            x = x + self.ffn(self.norm(x, p + "1.layer_norm.weight"), p + "1.DenseReluDense.")
        return x

    # ---- LUMEN --------------------------------------------------------------------------------

    def memory_encode(self, ids, mask):
        """ids, mask [N, T] (padding at the end) -> memory [N, T, d] (residual after layer M)."""
        pos = torch.arange(ids.shape[1])[None, :].expand_as(ids)
        return self.encoder_layers(self.w("shared.weight")[ids], pos, mask, 0, self.M)

    def live_encode(self, q_mem, q_mask, p_mem, p_mask):
        """q_mem [B, Tq, d], p_mem [B, k, Tp, d] -> h [B, k*(Tq+Tp), d] and its mask."""
        B, k, Tp, d = p_mem.shape
        Tq = q_mem.shape[1]
        x = torch.cat([q_mem[:, None].expand(B, k, Tq, d), p_mem], 2).reshape(B * k, Tq + Tp, d)
        qm = q_mask[:, None].expand(B, k, Tq)
        mask = torch.cat([qm, p_mask], 2).reshape(B * k, Tq + Tp)
        qlen = q_mask.sum(1)  # [B]
        pos = torch.cat([torch.arange(Tq)[None, None].expand(B, k, Tq),
                         qlen[:, None, None] + torch.arange(Tp)[None, None].expand(B, k, Tp)], 2)
        x = self.encoder_layers(x, pos.reshape(B * k, -1), mask, self.M, self.c["num_layers"])
        x = self.norm(x, "encoder.final_layer_norm.weight")
        return x.reshape(B, k * (Tq + Tp), d), mask.reshape(B, k * (Tq + Tp))

    def encode(self, q, q_mask, p, p_mask):
        """q [B, Tq], p [B, k, Tp] ids with masks -> cross-attention input (h, mask)."""
        B, k, Tp = p.shape
        q_mem = self.memory_encode(q, q_mask)
        p_mem = self.memory_encode(p.reshape(B * k, Tp), p_mask.reshape(B * k, Tp))
        if self.compress is not None:
            p_mem = self.compress(p_mem, p_mask.reshape(B * k, Tp))
        return self.live_encode(q_mem, q_mask, p_mem.reshape(B, k, Tp, -1), p_mask)

    def decode(self, enc, enc_mask, dec_ids):
        """Teacher-forced logits [B, Td, V] for decoder inputs dec_ids [B, Td]."""
        Td = dec_ids.shape[1]
        x = self.w("shared.weight")[dec_ids]
        rel = torch.arange(Td)[None, :] - torch.arange(Td)[:, None]
        b = bucket(rel, False, self.c["relative_attention_num_buckets"],
                   self.c["relative_attention_max_distance"])
        table = self.w("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        self_bias = table[b].permute(2, 0, 1)[None]
        self_bias = self_bias + torch.triu(torch.full((Td, Td), float("-inf")), 1)
        cross_bias = torch.zeros(enc_mask.shape, dtype=x.dtype)
        cross_bias = cross_bias.masked_fill(~enc_mask, float("-inf"))[:, None, None, :]
        for i in range(self.c["num_decoder_layers"]):
            p = f"decoder.block.{i}.layer."
            n = self.norm(x, p + "0.layer_norm.weight")
            x = x + self.attn(n, n, p + "0.SelfAttention.", self_bias)
            n = self.norm(x, p + "1.layer_norm.weight")
            x = x + self.attn(n, enc, p + "1.EncDecAttention.", cross_bias)
            x = x + self.ffn(self.norm(x, p + "2.layer_norm.weight"), p + "2.DenseReluDense.")
        x = self.norm(x, "decoder.final_layer_norm.weight")
        if self.c["tie_word_embeddings"]:
            return (x * self.c["d_model"] ** -0.5) @ self.w("shared.weight").T
        return x @ self.w("lm_head.weight").T

    def loss(self, batch):
        enc, enc_mask = self.encode(batch["q"], batch["q_mask"], batch["p"], batch["p_mask"])
        logits = self.decode(enc, enc_mask, batch["dec_in"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                               ignore_index=-100)

    @torch.no_grad()
    def greedy(self, batch, max_new_tokens=24):
        """Greedy answers (ids up to and excluding EOS) and the first step's logits [B, V]."""
        enc, enc_mask = self.encode(batch["q"], batch["q_mask"], batch["p"], batch["p_mask"])
        B = enc.shape[0]
        eos = self.c["eos_token_id"]
        ids = torch.full((B, 1), self.c["decoder_start_token_id"], dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        first = None
        for _ in range(max_new_tokens):
            logits = self.decode(enc, enc_mask, ids)[:, -1]
            if first is None:
                first = logits.clone()
            nxt = logits.argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == eos
            if bool(done.all()):
                break
        out = []
        for row in ids[:, 1:].tolist():
            out.append(row[: row.index(eos)] if eos in row else row)
        return out, first


def collate(examples, pad_id=0):
    """Pads a list of prepare_data examples into the model's batch tensors."""
    B, k = len(examples), len(examples[0]["passages"])
    Tq = max(len(e["q"]) for e in examples)
    Tp = max(len(p) for e in examples for p in e["passages"])
    Td = max(len(e["target"]) for e in examples)
    q = torch.full((B, Tq), pad_id, dtype=torch.long)
    p = torch.full((B, k, Tp), pad_id, dtype=torch.long)
    labels = torch.full((B, Td), -100, dtype=torch.long)
    dec_in = torch.full((B, Td), pad_id, dtype=torch.long)
    q_mask = torch.zeros(B, Tq, dtype=torch.bool)
    p_mask = torch.zeros(B, k, Tp, dtype=torch.bool)
    for b, e in enumerate(examples):
        q[b, : len(e["q"])] = torch.tensor(e["q"])
        q_mask[b, : len(e["q"])] = True
        for j, ps in enumerate(e["passages"]):
            p[b, j, : len(ps)] = torch.tensor(ps)
            p_mask[b, j, : len(ps)] = True
        t = e["target"]
        labels[b, : len(t)] = torch.tensor(t)
        dec_in[b, 0] = 0
        dec_in[b, 1: len(t)] = torch.tensor(t[:-1])
    return dict(q=q, q_mask=q_mask, p=p, p_mask=p_mask, dec_in=dec_in, labels=labels)
