"""MTP self-speculation: the MTP head drafts the token after next, the main model verifies it in the same pass that
decodes the next token; exact in distribution (speculative sampling) and exactly greedy at temperature 0.

Each step feeds [cur, d] to the main model, where cur is the newest token and d the draft for the token after it,
drawn from q = the MTP head's distribution (processed like the target: temperature, top-k, top-p; sampling.py).
The pass gives p0 (the target's distribution after cur) and p1 (after d). Speculative sampling's rule:
  accept d with probability min(1, p0(d) / q(d));  then emit d and a bonus token b ~ p1;
  on reject, emit a ~ normalize(max(0, p0 - q)) instead (the mass p0 puts beyond what q proposes).
Accepted or not, the emitted token after cur is distributed exactly as p0 (Leviathan et al. 2023, Chen et al. 2023),
and b ~ p1 is the target's next distribution given d. At temperature 0 p0 and q are one-hot: d is accepted iff it
is the argmax, and the replacement is the argmax: the plain greedy output token for token.
Every row keeps one cache length: a rejected draft's cache slot is masked out for good (attention mask 0; positions
count real tokens, so the replacement fed next step gets the position d would have had). Finished rows leave the
batch (and both caches), as in the plain loop. The next draft comes from
the MTP head at the last kept position: at d (with Emb(b)) if accepted, else at cur (with Emb(a)).
Logprobs are log p(token) under softmax(logits / T) before truncation, like the plain loop's.
"""
from __future__ import annotations

import torch

from base_model import routing, threads
from base_model.masks import positions_and_mask
from base_model.sampling import draw, process


def verify(p: torch.Tensor, q: torch.Tensor, d: torch.Tensor, gen, greedy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Speculative sampling's accept test. p, q [B, V]: target and draft distributions; d [B] drawn from q.
    Returns (accepted [B] bool, replacement [B]: the token to emit instead where not accepted)."""
    if greedy:
        a = p.argmax(-1)
        return a == d, a
    pd, qd = p.gather(1, d[:, None])[:, 0], q.gather(1, d[:, None])[:, 0]
    u = torch.rand(d.shape[0], generator=gen, device=d.device, dtype=p.dtype)
    ok = u * qd < pd                                           # P(ok) = min(1, p(d) / q(d))
    residual = (p - q).clamp(min=0)
    empty = residual.sum(-1, keepdim=True) <= 0                # p == q up to round-off: p itself
    return ok, draw(torch.where(empty, p, residual), gen)


@torch.no_grad()
def decode_mtp(model, ids, mask, max_new_tokens, temperature, top_p, top_k, checker, gen, recorder=None):
    """MTP speculative decoding. Returns per row (tokens, logprobs, reason, fed routes or None) and acceptance
    stats. `recorder` (base_model.routing.record): the routes of every token fed, prompt first."""
    b, dev, greedy = ids.shape[0], ids.device, temperature <= 0
    inner, head, mtp_layer = model.model, model.lm_head, model.model.mtp_layers[0]
    cap = ids.shape[1] + 2 * max_new_tokens + 4
    cache, mcache = model.new_cache(b, cap), model.new_cache(b, cap, mtp=True)

    def main(tokens, mask, keep):
        """Main-model pass over `tokens`: hidden states, (logp, probs) at the last `keep` positions, routes fed."""
        h = inner(tokens, mask, None, None, cache).last_hidden_state
        cache.length += tokens.shape[1]
        logp, probs = process(head(h[:, -keep:]), temperature, top_p, top_k)
        return h, logp, probs, (recorder.pop().cpu() if recorder is not None else None)

    def draft(h, next_tokens, mask):
        """MTP pass (its own cache): the pre-head states [B, S, D] predicting the token after `next_tokens`."""
        pos, m = positions_and_mask(mask, h.shape[0], h.shape[1], mcache.length, dev)
        cos, sin = inner.rotary_emb(pos)
        _, normed = mtp_layer.predict(h, inner.embed_tokens(next_tokens), cos, sin, m, mcache)
        mcache.length += h.shape[1]
        return normed

    def pick(probs):
        return probs.argmax(-1) if greedy else draw(probs, gen)

    def propose(normed):
        """q (the draft distribution, processed like the target) and the draft d ~ q from pre-head states [B, D]."""
        q = process(head(normed), temperature, top_p, top_k)[1]
        return q, pick(q)

    h, logp, p, routes = main(ids, mask, 1)
    fed = routing.prompt_routes(routes, mask) if routes is not None else [None] * b
    cur = pick(p[:, -1])
    cur_lp = logp[:, -1].gather(1, cur[:, None])[:, 0]
    q, d = propose(draft(h, torch.cat([ids[:, 1:], cur[:, None]], 1), mask)[:, -1])
    out = [([], [], "length") for _ in range(b)]
    active = [True] * b
    proposed = accepted = 0

    def emit(r, t, l):
        if active[r]:
            out[r][0].append(t)
            out[r][1].append(l)
            if checker.hit(out[r][0]):
                out[r] = (out[r][0], out[r][1], "stop")
                active[r] = False
            elif len(out[r][0]) >= max_new_tokens:
                active[r] = False

    for r, (t, l) in enumerate(zip(cur.tolist(), cur_lp.tolist())):
        emit(r, t, l)
    rows = list(range(b))                                            # original row of each row still in the batch
    while any(active):
        threads.adapt()
        mask = torch.cat([mask, mask.new_ones(len(rows), 2)], dim=1)
        h, logp, p, routes = main(torch.stack([cur, d], 1), mask, 2)
        ok, rep = verify(p[:, 0], q, d, gen, greedy)
        bonus = pick(p[:, 1])
        mask[:, -1] = ok.long()                                      # a rejected draft's slot is masked out for good
        proposed += len(rows)
        accepted += int(ok.sum())
        lp_d = logp[:, 0].gather(1, d[:, None])[:, 0].tolist()
        lp_b = logp[:, 1].gather(1, bonus[:, None])[:, 0].tolist()
        lp_r = logp[:, 0].gather(1, rep[:, None])[:, 0].tolist()
        for j, (r, o, dt, bt, rt) in enumerate(zip(rows, ok.tolist(), d.tolist(), bonus.tolist(), rep.tolist())):
            if routes is not None:
                fed[r].append(routes[j, : 2 if o else 1])             # cur always; the draft only if accepted
            if o:
                emit(r, dt, lp_d[j])
                emit(r, bt, lp_b[j])
            else:
                emit(r, rt, lp_r[j])
        keep = [j for j, r in enumerate(rows) if active[r]]
        if not keep:
            break
        if len(keep) < len(rows):                                    # finished rows leave the batch and the caches
            k = torch.tensor(keep, dtype=torch.long, device=dev)
            rows = [rows[j] for j in keep]
            h, ok, d, rep, bonus, mask = h[k], ok[k], d[k], rep[k], bonus[k], mask[k]
            cache.select(k)
            mcache.select(k)
        nxt = torch.where(ok, d, rep)
        normed = draft(h, torch.stack([nxt, bonus], 1), mask)    # both slots go through the MTP cache
        q, d = propose(torch.where(ok[:, None], normed[:, 1], normed[:, 0]))
        cur = torch.where(ok, bonus, rep)
    stats = {"mtp_proposed": proposed, "mtp_accepted": accepted,
             "mtp_acceptance": accepted / proposed if proposed else 0.0}
    return [(*o, f) for o, f in zip(out, fed)], stats
