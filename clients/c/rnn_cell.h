/* rnn_cell.h -- the arithmetic of the C client: forward, BPTT and the loss of the Elman (tanh) and
 * LSTM cells, written once over a floating type.
 *
 * rnn.c includes this file once per dtype, after defining
 *   REAL            double or float: the type of every array of the call and of every operation
 *   SFX(name)       the name with the dtype's suffix (name##_f64, name##_f32), so both copies link
 *   TANH, EXP, LOG  libm's function of that type (tanh or tanhf, ...)
 * and the type-independent declarations (struct dims, struct call_in, struct call_out, CELL_*,
 * GATE_*, NOT_*, LSTM_PLANES, RNN_BUG). There is deliberately no include guard.
 *
 * Why float32 is computed in float: a C library offers float32 for speed and memory and then computes
 * in float; rnnspec's tolerances are built for that (its deviation samples evaluate the equations in
 * the tested dtype). Nothing is accumulated in a wider type, so what is checked is what such a
 * library would ship.
 *
 * Layout: every array is C order, time-major, batch rows are row vectors (docs/targets.md): x is
 * (T, B, I), a state (B, H), U_k (H, I), W_k (H, H), V (K, H). So the notes' U x_t is, for batch row
 * n, out[n][r] = sum_j U[r][j] x[n][j], which is the loop order below (rows of U are contiguous).
 */

/* s = sigma(z) and its complement 1 - s = sigma(-z), each to a few ulps, from one exp of a
   non-positive argument (no overflow; for large |z| they are exactly 1 and 0). 1 - s by subtraction
   would lose every bit s shares with 1 (eight at z = 6), and sigma' = s (1 - s) would inherit that:
   on a float64 LSTM case with b_i near 6, dL/db_i came out at 0.70 of rnnspec's tolerance that way,
   at 0.004 this way (benchmarks/long_run_c_client.log as committed in 861e63d). */
static void SFX(sigmoid_pair)(REAL z, REAL *s, REAL *s_complement)
{
    if (z >= 0) {
        REAL e = EXP(-z);          /* in (0, 1]: no overflow */
        *s = (REAL)1 / ((REAL)1 + e);
        *s_complement = e * *s;    /* e / (1 + e) */
    } else {
        REAL e = EXP(z);
        *s_complement = (REAL)1 / ((REAL)1 + e);
        *s = e * *s_complement;
    }
}

/* z[n][r] = bias[r] + sum_j U[r][j] xt[n][j] + sum_j W[r][j] hprev[n][j], for every batch row n.
   The bias first, then the input, then the recurrent term: one fixed order, so the answers are
   deterministic (the suite checks that). */
static void SFX(preactivation)(int B, int I, int H, const REAL *xt, const REAL *hprev,
                               const REAL *U, const REAL *W, const REAL *bias, REAL *z)
{
    for (int n = 0; n < B; n++) {
        const REAL *xn = xt + (size_t)n * I;
        const REAL *hn = hprev + (size_t)n * H;
        for (int r = 0; r < H; r++) {
            const REAL *u = U + (size_t)r * I;
            const REAL *w = W + (size_t)r * H;
            REAL s = bias[r];
            for (int j = 0; j < I; j++)
                s += u[j] * xn[j];
            for (int j = 0; j < H; j++)
                s += w[j] * hn[j];
            z[(size_t)n * H + r] = s;
        }
    }
}

/* The recurrence over all T steps.
   h, c: (T, B, H) outputs (c only for the LSTM).
   act: for the LSTM, per step, the activated gates i, f, g, o and the complements 1 - i, 1 - f, 1 - o
   of the logistic ones, (T, LSTM_PLANES, B, H), kept because BPTT needs them; NULL for the Elman cell, whose
   derivative 1 - h^2 comes from h itself. */
static void SFX(forward)(int cell, const struct dims *d, const struct call_in *in,
                         REAL *h, REAL *c, REAL *act)
{
    const int B = d->B, I = d->I, H = d->H;
    const size_t BH = (size_t)B * H;
    const REAL *x = in->x;

    for (int t = 0; t < d->T; t++) {
        const REAL *xt = x + (size_t)t * B * I;
        const REAL *hprev = t ? h + (size_t)(t - 1) * BH : (const REAL *)in->h0;
        REAL *ht = h + (size_t)t * BH;

        if (cell == CELL_ELMAN) {
            /* z_t is computed in place in h_t, then squashed */
            SFX(preactivation)(B, I, H, xt, hprev, in->U[0], in->W[0], in->b[0], ht);
            for (size_t k = 0; k < BH; k++)
                ht[k] = TANH(ht[k]);
            continue;
        }

        const REAL *cprev = t ? c + (size_t)(t - 1) * BH : (const REAL *)in->c0;
        REAL *ct = c + (size_t)t * BH;
        REAL *a = act + (size_t)t * LSTM_PLANES * BH;
        for (int g = 0; g < 4; g++) {
            const REAL *bias = in->b[g];
#if RNN_BUG == 1
            /* the deliberate bug 1: the input gate reads the forget gate's bias */
            if (g == GATE_I)
                bias = in->b[GATE_F];
#endif
            SFX(preactivation)(B, I, H, xt, hprev, in->U[g], in->W[g], bias, a + g * BH);
        }
        for (size_t k = 0; k < BH; k++) {
            REAL gi, gf, go, ci, cf, co;  /* the logistic gates and their complements */
            REAL gg = TANH(a[GATE_G * BH + k]);
            SFX(sigmoid_pair)(a[GATE_I * BH + k], &gi, &ci);
            SFX(sigmoid_pair)(a[GATE_F * BH + k], &gf, &cf);
            SFX(sigmoid_pair)(a[GATE_O * BH + k], &go, &co);
            a[GATE_I * BH + k] = gi;
            a[GATE_F * BH + k] = gf;
            a[GATE_G * BH + k] = gg;
            a[GATE_O * BH + k] = go;
            a[NOT_I * BH + k] = ci;
            a[NOT_F * BH + k] = cf;
            a[NOT_O * BH + k] = co;
            ct[k] = gf * cprev[k] + gi * gg;
            ht[k] = go * TANH(ct[k]);
        }
    }
}

/* Backpropagation through time.
   dh_out: dL/dh_t for every t from outside the recurrence (the vjp's cotangent, or the loss head's
   V^T dlogits), (T, B, H). dc_out: likewise dL/dc_t for the LSTM's cell state, or NULL (the loss).
   h, c, act: what SFX(forward) kept. Writes the gradients of x, the initial states and every step
   parameter into out (zeroed here). work: 8 B H elements. */
static void SFX(bptt)(int cell, const struct dims *d, const struct call_in *in,
                      const REAL *h, const REAL *c, const REAL *act,
                      const REAL *dh_out, const REAL *dc_out, const struct call_out *out, REAL *work)
{
    const int T = d->T, B = d->B, I = d->I, H = d->H;
    const int gates = cell == CELL_LSTM ? 4 : 1;
    const size_t BH = (size_t)B * H;
    const REAL *x = in->x;
    REAL *dx = out->x;
    REAL *carry_h = work;           /* dL/dh_t through h_{t+1}: sum_k dz_k W_k            */
    REAL *carry_c = work + BH;      /* dL/dc_t through c_{t+1}: dc_{t+1} * f_{t+1}        */
    REAL *dz = work + 2 * BH;       /* dL/dz_k of every gate at this step, (gates, B, H)  */
    REAL *dh = work + 6 * BH;       /* dL/dh_t in all                                     */
    REAL *dc = work + 7 * BH;       /* dL/dc_t in all                                     */

    memset(dx, 0, sizeof(REAL) * (size_t)T * B * I);
    for (int g = 0; g < gates; g++) {
        memset(out->U[g], 0, sizeof(REAL) * (size_t)H * I);
        memset(out->W[g], 0, sizeof(REAL) * (size_t)H * H);
        memset(out->b[g], 0, sizeof(REAL) * (size_t)H);
    }
    memset(carry_h, 0, sizeof(REAL) * BH);
    memset(carry_c, 0, sizeof(REAL) * BH);

    for (int t = T - 1; t >= 0; t--) {
        const REAL *ht = h + (size_t)t * BH;
        const REAL *hprev = t ? h + (size_t)(t - 1) * BH : (const REAL *)in->h0;
        const REAL *xt = x + (size_t)t * B * I;
        REAL *dxt = dx + (size_t)t * B * I;

        for (size_t k = 0; k < BH; k++) {
            REAL outside = dh_out[(size_t)t * BH + k];
#if RNN_BUG == 2
            /* the deliberate bug 2: the last step's own cotangent is dropped */
            if (t == T - 1)
                outside = 0;
#endif
            dh[k] = outside + carry_h[k];
        }

        if (cell == CELL_ELMAN) {
            /* h_t = tanh(z_t), tanh' = 1 - h_t^2 */
            for (size_t k = 0; k < BH; k++)
                dz[k] = dh[k] * ((REAL)1 - ht[k] * ht[k]);
        } else {
            const REAL *ct = c + (size_t)t * BH;
            const REAL *cprev = t ? c + (size_t)(t - 1) * BH : (const REAL *)in->c0;
            const REAL *a = act + (size_t)t * LSTM_PLANES * BH;
            for (size_t k = 0; k < BH; k++) {
                REAL gi = a[GATE_I * BH + k], gf = a[GATE_F * BH + k];
                REAL gg = a[GATE_G * BH + k], go = a[GATE_O * BH + k];
                REAL tc = TANH(ct[k]);  /* recomputed: the same call on the same value as forward */
                /* c_t reaches L through its own cotangent, through c_{t+1}, and through h_t = o tanh(c_t) */
                dc[k] = (dc_out ? dc_out[(size_t)t * BH + k] : (REAL)0) + carry_c[k]
                        + dh[k] * go * ((REAL)1 - tc * tc);
                /* sigma' = s (1 - s) with the complement kept by forward, tanh' = 1 - g^2 */
                dz[GATE_I * BH + k] = dc[k] * gg * gi * a[NOT_I * BH + k];
                dz[GATE_F * BH + k] = dc[k] * cprev[k] * gf * a[NOT_F * BH + k];
                dz[GATE_G * BH + k] = dc[k] * gi * ((REAL)1 - gg * gg);
                dz[GATE_O * BH + k] = dh[k] * tc * go * a[NOT_O * BH + k];
                carry_c[k] = dc[k] * gf;
            }
        }

        /* parameter gradients: dU_k += dz_k^T x_t, dW_k += dz_k^T h_{t-1}, db_k += sum over the batch */
        for (int g = 0; g < gates; g++) {
            REAL *dU = out->U[g], *dW = out->W[g], *db = out->b[g];
            const REAL *dzg = dz + g * BH;
            for (int n = 0; n < B; n++) {
                const REAL *xn = xt + (size_t)n * I;
                const REAL *hn = hprev + (size_t)n * H;
                for (int r = 0; r < H; r++) {
                    REAL e = dzg[(size_t)n * H + r];
                    REAL *urow = dU + (size_t)r * I, *wrow = dW + (size_t)r * H;
                    db[r] += e;
                    for (int j = 0; j < I; j++)
                        urow[j] += e * xn[j];
                    for (int j = 0; j < H; j++)
                        wrow[j] += e * hn[j];
                }
            }
        }

        /* input and state gradients: dx_t = sum_k dz_k U_k, dL/dh_{t-1} (next carry) = sum_k dz_k W_k */
        memset(carry_h, 0, sizeof(REAL) * BH);
        for (int g = 0; g < gates; g++) {
            const REAL *U = in->U[g], *W = in->W[g];
            const REAL *dzg = dz + g * BH;
            for (int n = 0; n < B; n++) {
                REAL *dxn = dxt + (size_t)n * I;
                REAL *chn = carry_h + (size_t)n * H;
                for (int r = 0; r < H; r++) {
                    REAL e = dzg[(size_t)n * H + r];
                    const REAL *u = U + (size_t)r * I, *w = W + (size_t)r * H;
                    for (int j = 0; j < I; j++)
                        dxn[j] += e * u[j];
                    for (int j = 0; j < H; j++)
                        chn[j] += e * w[j];
                }
            }
        }
    }

    memcpy(out->h0, carry_h, sizeof(REAL) * BH);
    if (cell == CELL_LSTM)
        memcpy(out->c0, carry_c, sizeof(REAL) * BH);
}

/* The head and its loss: L = sum_t sum_n [ logsumexp(a) - a_y ], a = V h_t[n] + c, y = targets[t][n];
   dL/da = softmax(a) - onehot(y). Writes the value, dV, dc and dL/dh_t into dh_out (T, B, H).
   work: K elements. */
static void SFX(head)(const struct dims *d, const struct call_in *in, const REAL *h,
                      const struct call_out *out, REAL *dh_out, REAL *work)
{
    const int K = d->K, H = d->H;
    const size_t TB = (size_t)d->T * d->B;
    const REAL *V = in->V, *chead = in->c;
    REAL *dV = out->V, *dchead = out->c_head;
    REAL *logits = work;
    REAL total = 0;

    memset(dV, 0, sizeof(REAL) * (size_t)K * H);
    memset(dchead, 0, sizeof(REAL) * (size_t)K);
    for (size_t m = 0; m < TB; m++) {
        const REAL *hm = h + m * H;
        REAL *dhm = dh_out + m * H;
        int y = (int)in->targets[m];  /* checked to lie in [0, K) before any arithmetic */
        REAL top, sum = 0;

        for (int k = 0; k < K; k++) {
            const REAL *v = V + (size_t)k * H;
            REAL s = chead[k];
            for (int j = 0; j < H; j++)
                s += v[j] * hm[j];
            logits[k] = s;
        }
        /* log-sum-exp shifted by the largest logit, so no exp overflows (the large-logits regime) */
        top = logits[0];
        for (int k = 1; k < K; k++)
            if (logits[k] > top)
                top = logits[k];
        for (int k = 0; k < K; k++)
            sum += EXP(logits[k] - top);
        total += top + LOG(sum) - logits[y];

        memset(dhm, 0, sizeof(REAL) * (size_t)H);
        for (int k = 0; k < K; k++) {
            REAL e = EXP(logits[k] - top) / sum - (k == y ? (REAL)1 : (REAL)0);
            const REAL *v = V + (size_t)k * H;
            REAL *dv = dV + (size_t)k * H;
            dchead[k] += e;
            for (int j = 0; j < H; j++) {
                dv[j] += e * hm[j];
                dhm[j] += e * v[j];
            }
        }
    }
    *(REAL *)out->value = total;
}

/* One call of `method` in this dtype. The caller has checked every shape and the targets; in and
   out hold arrays of REAL (targets: int64). Returns 0, or -1 with a message in err. */
static int SFX(run)(int method, int cell, const struct dims *d, const struct call_in *in,
                    const struct call_out *out, char *err, size_t errlen)
{
    const size_t BH = (size_t)d->B * d->H, TBH = (size_t)d->T * BH;
    REAL *h = out->h, *c = out->c, *act = NULL, *work = NULL, *dh_out = NULL, *space = NULL;
    int lstm = cell == CELL_LSTM;

    /* one allocation for everything: the states when not outputs, the gates, BPTT's and the head's
       scratch. Sizes are small (the suite's cases); a failure is still reported, not dereferenced. */
    size_t need = (method == M_FORWARD ? 0 : (lstm ? 2 : 1) * TBH)   /* h (and c) when not outputs */
                  + (lstm ? LSTM_PLANES * TBH : 0)                     /* act                        */
                  + (method == M_FORWARD ? 0 : 8 * BH)                  /* BPTT's work                */
                  + (method == M_LOSS ? TBH + (size_t)d->K : 0);        /* dh_out, logits             */
    if (need) {
        space = malloc(sizeof(REAL) * need);
        if (!space) {
            snprintf(err, errlen, "out of memory (%zu bytes of scratch)", sizeof(REAL) * need);
            return -1;
        }
    }
    REAL *p = space;
    if (method != M_FORWARD) {
        h = p, p += TBH;
        if (lstm)
            c = p, p += TBH;
    }
    if (lstm)
        act = p, p += LSTM_PLANES * TBH;
    if (method != M_FORWARD)
        work = p, p += 8 * BH;

    SFX(forward)(cell, d, in, h, c, act);
    if (method == M_VJP)
        SFX(bptt)(cell, d, in, h, c, act, in->cot_h, lstm ? (const REAL *)in->cot_c : NULL, out, work);
    if (method == M_LOSS) {
        dh_out = p, p += TBH;
        SFX(head)(d, in, h, out, dh_out, p);
        SFX(bptt)(cell, d, in, h, c, act, dh_out, NULL, out, work);
    }
    free(space);
    return 0;
}
