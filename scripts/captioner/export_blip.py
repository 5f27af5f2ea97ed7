#!/usr/bin/python3
"""Exports BLIP base's captioning model to the captioner layout p2pz installs (docs/CAPTIONER.md).

Debian (the project's machines) packages PyTorch but not `transformers`, so BLIP's captioning model is
defined here in plain PyTorch, with state-dict keys exactly as Hugging Face transformers'
BlipForConditionalGeneration names them, as read in
  huggingface/transformers src/transformers/models/blip/modeling_blip.py  (commit 0e97420c9957149b80ff57632148e8ce80203b48)
  huggingface/transformers src/transformers/models/blip/modeling_blip_text.py (commit edc939760c883013366a4f608d4836a45a5b5be2)
Vision: ViT (patch Conv2d + class token + learned positions, pre-norm layers with a fused `qkv`,
`projection`, GELU MLP, `post_layernorm`). Text: BERT decoder (post-norm layers: causal self-attention
with a key/value cache, cross-attention to the image tokens, GELU feed-forward) and the MLM head
(`cls.predictions`: dense, GELU, LayerNorm, decoder + bias).

This is checked against our reading of transformers' code, not against transformers itself (it is
not installed here): `--self-test` builds a tiny random model, saves it as safetensors, loads it back
through the loader below, exports it and writes the torch module's own outputs and greedy caption, which
test/scripts/export-blip.test.ts compares with onnxruntime and `p2pz caption`.

Usage:
  /usr/bin/python3 scripts/captioner/export_blip.py SRC OUT   # SRC: config.json, preprocessor_config.json,
                                                               # vocab.txt, pytorch_model.bin or model.safetensors
  /usr/bin/python3 scripts/captioner/export_blip.py --self-test OUT [--pixels RAW]
Then: p2pz models install --from OUT --name blip-image-captioning-base
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------------------------------------- config


class Cfg:
    def __init__(self, config):
        v, t = config.get('vision_config', {}), config.get('text_config', {})
        self.image_size = v.get('image_size', 384)
        self.patch_size = v.get('patch_size', 16)
        self.v_width = v.get('hidden_size', 768)
        self.v_layers = v.get('num_hidden_layers', 12)
        self.v_heads = v.get('num_attention_heads', 12)
        self.v_mlp = v.get('intermediate_size', 3072)
        self.v_eps = v.get('layer_norm_eps', 1e-5)
        self.vocab = t.get('vocab_size', 30524)
        self.t_width = t.get('hidden_size', 768)
        self.t_layers = t.get('num_hidden_layers', 12)
        self.t_heads = t.get('num_attention_heads', 12)
        self.t_mlp = t.get('intermediate_size', 3072)
        self.t_eps = t.get('layer_norm_eps', 1e-12)
        self.positions = t.get('max_position_embeddings', 512)
        self.encoder_width = t.get('encoder_hidden_size', self.v_width)
        self.bos = t.get('bos_token_id', 30522)
        self.eos = t.get('sep_token_id', 102)
        self.pad = t.get('pad_token_id', 0)


def gelu(x):
    return nn.functional.gelu(x)  # erf GELU, transformers' ACT2FN['gelu']


# ---------------------------------------------------------------------------------------------- vision


class BlipVisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, c.v_width))
        self.patch_embedding = nn.Conv2d(3, c.v_width, c.patch_size, c.patch_size)
        n = (c.image_size // c.patch_size) ** 2
        self.position_embedding = nn.Parameter(torch.zeros(1, n + 1, c.v_width))

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [B, N, D]
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        return x + self.position_embedding[:, : x.shape[1], :]


class BlipAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c.v_heads
        self.qkv = nn.Linear(c.v_width, 3 * c.v_width)
        self.projection = nn.Linear(c.v_width, c.v_width)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        qkv = self.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax(q @ k.transpose(-1, -2) * (d // h) ** -0.5, dim=-1)
        return self.projection((a @ v).permute(0, 2, 1, 3).reshape(b, n, d))


class BlipMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c.v_width, c.v_mlp)
        self.fc2 = nn.Linear(c.v_mlp, c.v_width)

    def forward(self, x):
        return self.fc2(gelu(self.fc1(x)))


class BlipEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = BlipAttention(c)
        self.layer_norm1 = nn.LayerNorm(c.v_width, eps=c.v_eps)
        self.mlp = BlipMLP(c)
        self.layer_norm2 = nn.LayerNorm(c.v_width, eps=c.v_eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class BlipEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([BlipEncoderLayer(c) for _ in range(c.v_layers)])


class BlipVisionModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BlipVisionEmbeddings(c)
        self.encoder = BlipEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.v_width, eps=c.v_eps)

    def forward(self, pixel_values):
        x = self.embeddings(pixel_values)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)  # last_hidden_state [B, 1+N, Dv]


# ------------------------------------------------------------------------------------------------ text


class BlipTextEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab, c.t_width, padding_idx=c.pad)
        self.position_embeddings = nn.Embedding(c.positions, c.t_width)
        self.LayerNorm = nn.LayerNorm(c.t_width, eps=c.t_eps)

    def forward(self, input_ids, past_length):
        positions = torch.arange(input_ids.shape[1], dtype=torch.long) + past_length
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions)[None])


class BlipTextSelfAttention(nn.Module):
    def __init__(self, c, cross):
        super().__init__()
        self.heads = c.t_heads
        kv_width = c.encoder_width if cross else c.t_width
        self.query = nn.Linear(c.t_width, c.t_width)
        self.key = nn.Linear(kv_width, c.t_width)
        self.value = nn.Linear(kv_width, c.t_width)

    def split(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)

    def forward(self, x, mask=None, encoder_hidden_states=None, past=None):
        """mask: additive [1,1,L,P+L] or None. Returns (context, (key, value)) with key/value [B,H,P+L,dh]."""
        q = self.split(self.query(x))
        src = x if encoder_hidden_states is None else encoder_hidden_states
        k, v = self.split(self.key(src)), self.split(self.value(src))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            s = s + mask
        ctx = torch.softmax(s, dim=-1) @ v
        b, h, n, dh = ctx.shape
        return ctx.permute(0, 2, 1, 3).reshape(b, n, h * dh), (k, v)


class BlipTextSelfOutput(nn.Module):
    def __init__(self, c, width_in):
        super().__init__()
        self.dense = nn.Linear(width_in, c.t_width)
        self.LayerNorm = nn.LayerNorm(c.t_width, eps=c.t_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BlipTextAttention(nn.Module):
    def __init__(self, c, cross=False):
        super().__init__()
        self.self = BlipTextSelfAttention(c, cross)
        self.output = BlipTextSelfOutput(c, c.t_width)

    def forward(self, x, mask=None, encoder_hidden_states=None, past=None):
        ctx, present = self.self(x, mask, encoder_hidden_states, past)
        return self.output(ctx, x), present


class BlipTextIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.t_width, c.t_mlp)

    def forward(self, x):
        return gelu(self.dense(x))


class BlipTextLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = BlipTextAttention(c)
        self.crossattention = BlipTextAttention(c, cross=True)
        self.intermediate = BlipTextIntermediate(c)
        self.output = BlipTextSelfOutput(c, c.t_mlp)

    def forward(self, x, mask, encoder_hidden_states, past):
        x, present = self.attention(x, mask, None, past)
        x, _ = self.crossattention(x, None, encoder_hidden_states, None)
        return self.output(self.intermediate(x), x), present


class BlipTextEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([BlipTextLayer(c) for _ in range(c.t_layers)])


class BlipTextModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BlipTextEmbeddings(c)
        self.encoder = BlipTextEncoder(c)


class BlipTextPredictionHeadTransform(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.t_width, c.t_width)
        self.LayerNorm = nn.LayerNorm(c.t_width, eps=c.t_eps)

    def forward(self, x):
        return self.LayerNorm(gelu(self.dense(x)))


class BlipTextLMPredictionHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = BlipTextPredictionHeadTransform(c)
        self.decoder = nn.Linear(c.t_width, c.vocab, bias=False)
        self.bias = nn.Parameter(torch.zeros(c.vocab))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias


class BlipTextOnlyMLMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.predictions = BlipTextLMPredictionHead(c)


class BlipTextLMHeadModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BlipTextModel(c)
        self.cls = BlipTextOnlyMLMHead(c)

    def forward(self, input_ids, encoder_hidden_states, past):
        """past: per layer (key, value) [B,H,P,dh]. Returns logits [B,L,V] and the presents."""
        p = past[0][0].shape[2]
        n = input_ids.shape[1]
        x = self.bert.embeddings(input_ids, p)
        # Causal mask over cached + new positions: query i (position p+i) sees keys 0..p+i; BLIP's
        # extended mask is (1 − allowed)·−10000.
        allowed = (torch.arange(p + n)[None, :] <= (torch.arange(n)[:, None] + p)).to(x.dtype)
        mask = ((1.0 - allowed) * -10000.0)[None, None]
        presents = []
        for layer, lp in zip(self.bert.encoder.layer, past):
            x, present = layer(x, mask, encoder_hidden_states, lp)
            presents.append(present)
        return self.cls.predictions(x), presents


class BlipForConditionalGeneration(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vision_model = BlipVisionModel(c)
        self.text_decoder = BlipTextLMHeadModel(c)


# --------------------------------------------------------------------------------------------- weights


SAFETENSORS_DTYPES = {'F32': np.float32, 'F16': np.float16, 'F64': np.float64, 'I64': np.int64, 'I32': np.int32}


def read_safetensors(path):
    """safetensors: u64 little-endian header length, JSON header {name: {dtype, shape, data_offsets}},
    then the raw little-endian tensors (offsets relative to the end of the header)."""
    with open(path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        if info['dtype'] == 'BF16':
            start, end = info['data_offsets']
            raw = np.frombuffer(data[start:end], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            start, end = info['data_offsets']
            arr = np.frombuffer(data[start:end], dtype=SAFETENSORS_DTYPES[info['dtype']])
        out[name] = torch.from_numpy(arr.reshape(info['shape']).copy()).float() if arr.dtype != np.int64 else torch.from_numpy(arr.copy())
    return out


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        b = t.detach().contiguous().numpy().astype(np.float32).tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(len(h).to_bytes(8, 'little'))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_model(src):
    with open(os.path.join(src, 'config.json')) as f:
        c = Cfg(json.load(f))
    st = os.path.join(src, 'model.safetensors')
    state = read_safetensors(st) if os.path.exists(st) else torch.load(os.path.join(src, 'pytorch_model.bin'), map_location='cpu')
    model = BlipForConditionalGeneration(c)
    own = model.state_dict()
    # Keys of BlipForConditionalGeneration this captioner does not use (buffers, a tied copy).
    unused = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if 'text_decoder.cls.predictions.decoder.weight' in missing and 'text_decoder.bert.embeddings.word_embeddings.weight' in state:
        state['text_decoder.cls.predictions.decoder.weight'] = state['text_decoder.bert.embeddings.word_embeddings.weight']
        missing.remove('text_decoder.cls.predictions.decoder.weight')
    if missing:
        sys.exit(f'export_blip: the weights lack {len(missing)} keys, e.g. {missing[:3]}')
    ignored = [k for k in unused if not k.endswith('position_ids') and not k.startswith('text_decoder.cls.predictions.decoder.bias')]
    if ignored:
        print(f'export_blip: ignoring {len(ignored)} keys not used for captioning, e.g. {ignored[:3]}', file=sys.stderr)
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    return model.eval(), c


# ---------------------------------------------------------------------------------------------- export


class DecoderGraph(nn.Module):
    def __init__(self, text_decoder, layers):
        super().__init__()
        self.text_decoder = text_decoder
        self.layers = layers

    def forward(self, input_ids, encoder_hidden_states, *flat_past):
        past = [(flat_past[2 * i], flat_past[2 * i + 1]) for i in range(self.layers)]
        logits, presents = self.text_decoder(input_ids, encoder_hidden_states, past)
        return (logits, *[t for kv in presents for t in kv])


def export(model, c, out):
    os.makedirs(os.path.join(out, 'onnx'), exist_ok=True)
    pixels = torch.randn(1, 3, c.image_size, c.image_size)
    torch.onnx.export(model.vision_model, (pixels,), os.path.join(out, 'onnx', 'encoder_model.onnx'), input_names=['pixel_values'],
                      output_names=['last_hidden_state'], dynamic_axes={'pixel_values': {0: 'batch_size'}, 'last_hidden_state': {0: 'batch_size'}},
                      opset_version=14)
    dh = c.t_width // c.t_heads
    image = model.vision_model(pixels)
    ids = torch.tensor([[c.bos, 5]], dtype=torch.long)
    past = [torch.randn(1, c.t_heads, 3, dh) for _ in range(2 * c.t_layers)]
    names_in = ['input_ids', 'encoder_hidden_states'] + [f'past_key_values.{i}.{kv}' for i in range(c.t_layers) for kv in ('key', 'value')]
    names_out = ['logits'] + [f'present.{i}.{kv}' for i in range(c.t_layers) for kv in ('key', 'value')]
    axes = {'input_ids': {0: 'batch_size', 1: 'sequence_length'}, 'encoder_hidden_states': {0: 'batch_size', 1: 'encoder_sequence_length'},
            'logits': {0: 'batch_size', 1: 'sequence_length'}}
    for n in names_in[2:]:
        axes[n] = {0: 'batch_size', 2: 'past_sequence_length'}
    for n in names_out[1:]:
        axes[n] = {0: 'batch_size', 2: 'past_sequence_length + sequence_length'}
    torch.onnx.export(DecoderGraph(model.text_decoder, c.t_layers), (ids, image, *past), os.path.join(out, 'onnx', 'decoder_model_merged.onnx'),
                      input_names=names_in, output_names=names_out, dynamic_axes=axes, opset_version=14)


def copy_configs(src, out, c):
    for name in ('config.json', 'preprocessor_config.json', 'vocab.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'):
        if os.path.exists(os.path.join(src, name)) and os.path.abspath(src) != os.path.abspath(out):
            shutil.copy(os.path.join(src, name), os.path.join(out, name))


# ------------------------------------------------------------------------------------------- self-test


SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']


def tiny_source(src):
    """A tiny random BLIP in transformers' file layout, with its weights in model.safetensors."""
    os.makedirs(src, exist_ok=True)
    vocab = SPECIAL + ['a', 'picture', 'of'] + [f'w{i}' for i in range(40)] + [f'##s{i}' for i in range(8)] + ['[DEC]']
    config = {
        'architectures': ['BlipForConditionalGeneration'], 'model_type': 'blip',
        'vision_config': {'image_size': 32, 'patch_size': 8, 'hidden_size': 24, 'num_hidden_layers': 2, 'num_attention_heads': 3, 'intermediate_size': 40},
        'text_config': {'vocab_size': len(vocab), 'hidden_size': 16, 'num_hidden_layers': 2, 'num_attention_heads': 2, 'intermediate_size': 36,
                        'max_position_embeddings': 40, 'encoder_hidden_size': 24, 'bos_token_id': len(vocab) - 1, 'sep_token_id': 3, 'pad_token_id': 0,
                        'eos_token_id': 3},
    }
    with open(os.path.join(src, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(src, 'preprocessor_config.json'), 'w') as f:
        json.dump({'image_processor_type': 'BlipImageProcessor', 'size': {'height': 32, 'width': 32}, 'rescale_factor': 1 / 255,
                   'image_mean': [0.48145466, 0.4578275, 0.40821073], 'image_std': [0.26862954, 0.26130258, 0.27577711]}, f, indent=2)
    with open(os.path.join(src, 'vocab.txt'), 'w') as f:
        f.write('\n'.join(vocab) + '\n')
    torch.manual_seed(7)
    model = BlipForConditionalGeneration(Cfg(config))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'LayerNorm' in name or 'layer_norm' in name:
                p.normal_(1.0 if name.endswith('weight') else 0.0, 0.1)
            else:
                p.normal_(0, 0.3)
    write_safetensors(os.path.join(src, 'model.safetensors'), model.state_dict())
    return vocab


def greedy(model, c, pixels, prompt, min_length=10, max_length=30):
    """p2pz's decoding with one beam: prompt [DEC] + ids, eos suppressed below min_length (counting the
    prompt), argmax, stop at eos or max_length; every step recomputes the whole sequence (no cache)."""
    image = model.vision_model(pixels)
    seq = list(prompt)
    dh = c.t_width // c.t_heads
    while len(seq) < max_length:
        empty = [(torch.zeros(1, c.t_heads, 0, dh), torch.zeros(1, c.t_heads, 0, dh)) for _ in range(c.t_layers)]
        logits = model.text_decoder(torch.tensor([seq]), image, empty)[0][0, -1]
        if len(seq) < min_length:
            logits[c.eos] = -float('inf')
        t = int(torch.argmax(logits))
        seq.append(t)
        if t == c.eos:
            break
    return seq


def self_test(out, pixels_raw):
    src = out + '.source'
    vocab = tiny_source(src)
    model, c = load_model(src)
    export(model, c, out)
    copy_configs(src, out, c)
    torch.manual_seed(11)
    with open(os.path.join(src, 'preprocessor_config.json')) as f:
        pre = json.load(f)
    if pixels_raw:
        rgb = np.fromfile(pixels_raw, dtype=np.uint8).reshape(c.image_size, c.image_size, 3).astype(np.float32)
        mean, std = np.array(pre['image_mean'], np.float32), np.array(pre['image_std'], np.float32)
        pixels = torch.from_numpy(((rgb * np.float32(pre['rescale_factor']) - mean) / std).transpose(2, 0, 1)[None].copy())
    else:
        pixels = torch.randn(1, 3, c.image_size, c.image_size)
    ids = {t: i for i, t in enumerate(vocab)}
    prompt = [c.bos, ids['a'], ids['picture'], ids['of']]
    dh = c.t_width // c.t_heads
    with torch.no_grad():
        image = model.vision_model(pixels)
        past = [(torch.randn(1, c.t_heads, 3, dh), torch.randn(1, c.t_heads, 3, dh)) for _ in range(c.t_layers)]
        step_ids = torch.tensor([[ids['w3'], ids['w7']]])
        logits, presents = model.text_decoder(step_ids, image, past)
        seq = greedy(model, c, pixels, prompt)
    special = {c.bos, c.eos, c.pad} | {ids[t] for t in SPECIAL if t != '[UNK]'}
    caption = ' '.join(vocab[t] for t in seq[len(prompt):] if t not in special).replace(' ##', '').strip()
    ref = {
        'pixels': pixels.flatten().tolist(), 'pixelsShape': list(pixels.shape),
        'image': image.flatten().tolist(), 'imageShape': list(image.shape),
        'stepIds': step_ids.flatten().tolist(),
        'past': [t.flatten().tolist() for kv in past for t in kv], 'pastShape': list(past[0][0].shape),
        'logits': logits.flatten().tolist(), 'logitsShape': list(logits.shape),
        'presents': [t.flatten().tolist() for kv in presents for t in kv],
        'greedy': seq, 'caption': caption,
    }
    with open(os.path.join(out, 'reference.json'), 'w') as f:
        json.dump(ref, f)
    shutil.rmtree(src)


def main(argv):
    if len(argv) >= 2 and argv[0] == '--self-test':
        pixels = argv[argv.index('--pixels') + 1] if '--pixels' in argv else None
        self_test(argv[1], pixels)
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = argv
    model, c = load_model(src)
    with torch.no_grad():
        export(model, c, out)
    copy_configs(src, out, c)
    print(f'export_blip: wrote {out} (install it with: p2pz models install --from {out} --name blip-image-captioning-base)')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
