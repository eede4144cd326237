/* rnn.c -- the Elman (tanh) and LSTM cells in C, checked by rnnspec.
 *
 * C99, libc and libm only (and POSIX's mkdir for corpus mode). Three ways to use the same arithmetic:
 *
 *   ./rnn                               the process protocol on stdin/stdout (docs/protocol.md):
 *                                       rnnspec check exec:./rnn --cell lstm
 *   ./rnn --corpus DIR --results OUT    corpus mode (docs/corpus.md): reads DIR/cases.txt and each
 *                                       case's .npy inputs, writes OUT/<id>/<method>.<output>.npy
 *   cc -shared -fPIC -DRNN_LIBRARY      a shared library, one exported function per method
 *                                       (rnn_forward, rnn_vjp, rnn_loss), for inprocess.py
 *
 * Build: cc -std=c99 -O2 -Wall -Werror -o rnn rnn.c -lm   (README.md has the rest).
 *
 * Deliberate bugs, for showing that rnnspec rejects them (off unless asked for):
 *   -DRNN_BUG=1   the LSTM's input gate uses the forget gate's bias b_f instead of b_i
 *   -DRNN_BUG=2   BPTT drops the last step's own cotangent dL/dh_{T-1}
 *
 * The arithmetic lives in rnn_cell.h, written once over a type REAL and included once for double
 * and once for float; this file does everything else: the names and shapes of the contract, checking
 * what arrives, a small JSON reader, the protocol's frames, .npy files and the corpus.
 *
 * The host must be little-endian (the protocol's and .npy's byte order); main checks it.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifndef RNN_BUG
#define RNN_BUG 0
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

/* ------------------------------------------------------------------------------------------------
 * The contract: cells, methods, the arrays each method takes and returns (docs/protocol.md's table)
 * ------------------------------------------------------------------------------------------------ */

enum { CELL_ELMAN, CELL_LSTM, NCELLS };
enum { M_FORWARD, M_VJP, M_LOSS, NMETHODS };
enum { DT_FLOAT64, DT_FLOAT32, DT_INT64, NDTYPES };
/* the LSTM's gates in the order of docs/targets.md; the Elman cell's one "gate" is index 0 */
enum { GATE_I, GATE_F, GATE_G, GATE_O, MAX_GATES };
/* what the LSTM's forward keeps per step for BPTT: the four gates, then the complements 1 - s of the
   three logistic ones (rnn_cell.h says why they are kept rather than recomputed) */
enum { NOT_I = MAX_GATES, NOT_F, NOT_O, LSTM_PLANES };

static const char *const CELL_NAME[NCELLS] = {"elman", "lstm"};
static const char *const METHOD_NAME[NMETHODS] = {"forward", "vjp", "loss"};
static const char *const DTYPE_NAME[NDTYPES] = {"float64", "float32", "int64"};
static const char *const LSTM_GATE[MAX_GATES] = {"i", "f", "g", "o"};

struct dims {
    int T, B, I, H, K;  /* steps, batch, input size, hidden size, classes (K: the loss only) */
};

/* The arrays of one call, untyped: each points at the dtype's elements (targets: int64). */
struct call_in {
    const void *x, *h0, *c0, *U[MAX_GATES], *W[MAX_GATES], *b[MAX_GATES];
    const void *V, *c;             /* the loss's head; c is the output bias, not the cell state */
    const int64_t *targets;        /* the loss: (T, B) class indices                           */
    const void *cot_h, *cot_c;     /* vjp: dL/dh_t and dL/dc_t                                 */
};
struct call_out {
    void *h, *c;                   /* forward: the states over time                             */
    void *value;                   /* loss: one element                                         */
    void *x, *h0, *c0, *U[MAX_GATES], *W[MAX_GATES], *b[MAX_GATES];   /* vjp, loss: gradients */
    void *V, *c_head;              /* loss: gradients of the head                               */
};

/* What an array is in a call: its role decides its shape and where it goes in call_in/call_out. */
enum role { R_X, R_H0, R_C0, R_U, R_W, R_B, R_V, R_CHEAD, R_TARGETS, R_COT_H, R_COT_C, R_H, R_C, R_VALUE };

struct slot {
    char name[16];
    enum role role;
    int gate;
};

static int gates_of(int cell)
{
    return cell == CELL_LSTM ? 4 : 1;
}

static int add_slot(struct slot *s, int n, enum role role, int gate, const char *name)
{
    snprintf(s[n].name, sizeof s[n].name, "%s", name);
    s[n].role = role;
    s[n].gate = gate;
    return n + 1;
}

/* x, the initial states, the step parameters (U's, W's, b's, gate by gate), as the protocol names them */
static int add_step_inputs(struct slot *s, int n, int cell, int with_x)
{
    static const enum role param_roles[3] = {R_U, R_W, R_B};
    static const char *const param_names[3] = {"U", "W", "b"};
    if (with_x)
        n = add_slot(s, n, R_X, 0, "x");
    n = add_slot(s, n, R_H0, 0, "h0");
    if (cell == CELL_LSTM)
        n = add_slot(s, n, R_C0, 0, "c0");
    for (int p = 0; p < 3; p++)
        for (int g = 0; g < gates_of(cell); g++) {
            char name[16];
            if (cell == CELL_LSTM)
                snprintf(name, sizeof name, "%s_%s", param_names[p], LSTM_GATE[g]);
            else
                snprintf(name, sizeof name, "%s", param_names[p]);
            n = add_slot(s, n, param_roles[p], g, name);
        }
    return n;
}

/* The arrays `method` of `cell` takes (outputs == 0) or returns (outputs == 1), in the order the
   shared library's callers pass them. s holds at least 32 slots. Returns their number. */
static int call_slots(int method, int cell, int outputs, struct slot *s)
{
    int n = 0;
    if (!outputs) {
        n = add_step_inputs(s, n, cell, 1);
        if (method == M_VJP) {
            n = add_slot(s, n, R_COT_H, 0, "cot_h");
            if (cell == CELL_LSTM)
                n = add_slot(s, n, R_COT_C, 0, "cot_c");
        } else if (method == M_LOSS) {
            n = add_slot(s, n, R_V, 0, "V");
            n = add_slot(s, n, R_CHEAD, 0, "c");
            n = add_slot(s, n, R_TARGETS, 0, "targets");
        }
        return n;
    }
    if (method == M_FORWARD) {
        n = add_slot(s, n, R_H, 0, "h");
        if (cell == CELL_LSTM)
            n = add_slot(s, n, R_C, 0, "c");
        return n;
    }
    if (method == M_LOSS)
        n = add_slot(s, n, R_VALUE, 0, "value");
    n = add_step_inputs(s, n, cell, 1);
    if (method == M_LOSS) {
        n = add_slot(s, n, R_V, 0, "V");
        n = add_slot(s, n, R_CHEAD, 0, "c");
    }
    return n;
}

#ifndef RNN_LIBRARY
/* (shapes are checked and outputs allocated by this program; the library's caller does both) */
static const size_t DTYPE_SIZE[NDTYPES] = {8, 4, 8};
static const char *const NPY_DESCR[NDTYPES] = {"<f8", "<f4", "<i8"};

/* The shape of an array of this role; returns its number of dimensions (0: one element). */
static int shape_of(enum role role, const struct dims *d, long shape[3])
{
    switch (role) {
    case R_X:
        shape[0] = d->T, shape[1] = d->B, shape[2] = d->I;
        return 3;
    case R_H0: case R_C0:
        shape[0] = d->B, shape[1] = d->H;
        return 2;
    case R_U:
        shape[0] = d->H, shape[1] = d->I;
        return 2;
    case R_W:
        shape[0] = d->H, shape[1] = d->H;
        return 2;
    case R_B:
        shape[0] = d->H;
        return 1;
    case R_V:
        shape[0] = d->K, shape[1] = d->H;
        return 2;
    case R_CHEAD:
        shape[0] = d->K;
        return 1;
    case R_TARGETS:
        shape[0] = d->T, shape[1] = d->B;
        return 2;
    case R_COT_H: case R_COT_C: case R_H: case R_C:
        shape[0] = d->T, shape[1] = d->B, shape[2] = d->H;
        return 3;
    case R_VALUE:
        return 0;
    }
    return 0;
}

static size_t count_of(int ndim, const long *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    return n;
}

#endif

/* Where an input of this role goes. */
static const void **in_place(struct call_in *in, const struct slot *s)
{
    switch (s->role) {
    case R_X: return &in->x;
    case R_H0: return &in->h0;
    case R_C0: return &in->c0;
    case R_U: return &in->U[s->gate];
    case R_W: return &in->W[s->gate];
    case R_B: return &in->b[s->gate];
    case R_V: return &in->V;
    case R_CHEAD: return &in->c;
    case R_TARGETS: return (const void **)&in->targets;
    case R_COT_H: return &in->cot_h;
    case R_COT_C: return &in->cot_c;
    default: return NULL;
    }
}

/* Where an output of this role goes. */
static void **out_place(struct call_out *out, const struct slot *s)
{
    switch (s->role) {
    case R_H: return &out->h;
    case R_C: return &out->c;
    case R_VALUE: return &out->value;
    case R_X: return &out->x;
    case R_H0: return &out->h0;
    case R_C0: return &out->c0;
    case R_U: return &out->U[s->gate];
    case R_W: return &out->W[s->gate];
    case R_B: return &out->b[s->gate];
    case R_V: return &out->V;
    case R_CHEAD: return &out->c_head;
    default: return NULL;
    }
}

static int lookup(const char *name, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (name && strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

/* A message into err[0..errlen): cut short if it does not fit, which is acceptable for a message
   (vsnprintf, unlike snprintf, is not second-guessed by the compiler's truncation warnings). */
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------------
 * The arithmetic, once per dtype (rnn_cell.h)
 * ------------------------------------------------------------------------------------------------ */

#define REAL double
#define SFX(name) name##_f64
#define TANH tanh
#define EXP exp
#define LOG log
#include "rnn_cell.h"
#undef REAL
#undef SFX
#undef TANH
#undef EXP
#undef LOG

#define REAL float
#define SFX(name) name##_f32
#define TANH tanhf
#define EXP expf
#define LOG logf
#include "rnn_cell.h"
#undef REAL
#undef SFX
#undef TANH
#undef EXP
#undef LOG

/* The targets must index a class: checked before any arithmetic, since the head reads logits[y]. */
static int check_targets(const struct dims *d, const int64_t *targets, char *err, size_t errlen)
{
    for (long m = 0; m < (long)d->T * d->B; m++)
        if (targets[m] < 0 || targets[m] >= d->K) {
            say(err, errlen, "targets[%ld][%ld] = %lld, expected a class in [0, K) = [0, %d)",
                     m / d->B, m % d->B, (long long)targets[m], d->K);
            return -1;
        }
    return 0;
}

/* One call, every array already checked for shape and dtype. */
static int compute(int method, int cell, int dtype, const struct dims *d, const struct call_in *in,
                   const struct call_out *out, char *err, size_t errlen)
{
    if (method == M_LOSS && check_targets(d, in->targets, err, errlen))
        return -1;
    if (dtype == DT_FLOAT64)
        return run_f64(method, cell, d, in, out, err, errlen);
    return run_f32(method, cell, d, in, out, err, errlen);
}

/* ------------------------------------------------------------------------------------------------
 * The shared library (-DRNN_LIBRARY): what clients/c/inprocess.py calls through ctypes
 * ------------------------------------------------------------------------------------------------ */

/* What this client implements, the fields of the protocol's hello (docs/protocol.md), written once
   for the hello and for the library's rnn_declaration. float32 and float64 use libm's tanh/tanhf,
   exp/expf, log/logf, which glibc documents within 2 ulps: the "accurate" class (the logistic function
   1/(1+exp(-z)) adds two roundings, which the tolerances' safety factor covers). */
#define DECLARATION "\"cells\": [\"elman\", \"lstm\"], \"dtypes\": [\"float64\", \"float32\"], " \
    "\"activations\": [\"tanh\"], \"methods\": [\"forward\", \"vjp\", \"loss\"], \"variants\": [], " \
    "\"accuracy\": \"accurate\""

/* The declaration as one JSON object (the hello's fields without type, protocol and name). */
const char *rnn_declaration(void)
{
    return "{" DECLARATION "}";
}

/* Writes the names of the arrays `method` of `cell` takes (outputs == 0) or returns (outputs == 1),
   space-separated, into buf: the order in which rnn_forward/rnn_vjp/rnn_loss read and write them.
   Returns 0, or -1 for an unknown method or cell or a buffer too short. */
int rnn_names(const char *method, const char *cell, int outputs, char *buf, int buflen)
{
    struct slot s[32];
    int m = lookup(method, METHOD_NAME, NMETHODS), c = lookup(cell, CELL_NAME, NCELLS), used = 0;
    if (m < 0 || c < 0 || buflen < 1)
        return -1;
    buf[0] = '\0';
    int n = call_slots(m, c, outputs, s);
    for (int i = 0; i < n; i++) {
        int w = snprintf(buf + used, (size_t)(buflen - used), i ? " %s" : "%s", s[i].name);
        if (w < 0 || w >= buflen - used)
            return -1;
        used += w;
    }
    return 0;
}

/* The library's one call: dims = {T, B, I, H, K}; inputs and outputs in rnn_names' order, each a
   C-order array of the dtype (targets int64) of the shape docs/protocol.md gives; the caller
   allocates the outputs. Returns 0, or -1 with a message in err. */
static int library_call(int method, const char *cell, const char *dtype, const int *dims,
                        const void *const *inputs, void *const *outputs, char *err, int errlen)
{
    struct slot s[32];
    struct call_in in;
    struct call_out out;
    struct dims d = {dims[0], dims[1], dims[2], dims[3], dims[4]};
    int c = lookup(cell, CELL_NAME, NCELLS), t = lookup(dtype, DTYPE_NAME, 2);
    size_t len = errlen > 0 ? (size_t)errlen : 0;

    if (c < 0 || t < 0) {
        say(err, len, "cell must be elman or lstm and dtype float64 or float32, got %s, %s",
                 cell ? cell : "(null)", dtype ? dtype : "(null)");
        return -1;
    }
    memset(&in, 0, sizeof in);
    memset(&out, 0, sizeof out);
    int n = call_slots(method, c, 0, s);
    for (int i = 0; i < n; i++)
        *in_place(&in, &s[i]) = inputs[i];
    n = call_slots(method, c, 1, s);
    for (int i = 0; i < n; i++)
        *out_place(&out, &s[i]) = outputs[i];
    return compute(method, c, t, &d, &in, &out, err, len);
}

int rnn_forward(const char *cell, const char *dtype, const int *dims, const void *const *inputs,
                void *const *outputs, char *err, int errlen)
{
    return library_call(M_FORWARD, cell, dtype, dims, inputs, outputs, err, errlen);
}

int rnn_vjp(const char *cell, const char *dtype, const int *dims, const void *const *inputs,
            void *const *outputs, char *err, int errlen)
{
    return library_call(M_VJP, cell, dtype, dims, inputs, outputs, err, errlen);
}

int rnn_loss(const char *cell, const char *dtype, const int *dims, const void *const *inputs,
             void *const *outputs, char *err, int errlen)
{
    return library_call(M_LOSS, cell, dtype, dims, inputs, outputs, err, errlen);
}

#ifndef RNN_LIBRARY

/* ------------------------------------------------------------------------------------------------
 * A minimal JSON reader: enough for the headers the suite sends and for case.json
 * (objects, arrays, strings with escapes, numbers, true/false/null; depth at most 32)
 * ------------------------------------------------------------------------------------------------ */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct json {
    enum jtype type;
    double num;           /* J_NUM; J_BOOL: 0 or 1                         */
    char *str;            /* J_STR: the decoded string, NUL-terminated     */
    char *key;            /* a member of an object: its key                */
    struct json *child;   /* J_ARR, J_OBJ: the first element or member     */
    struct json *next;    /* the next element or member of the parent      */
};

struct jparser {
    const char *start, *p, *end;
    int depth;
    char err[160];
};

static void json_free(struct json *j)
{
    while (j) {
        struct json *next = j->next;
        json_free(j->child);
        free(j->str);
        free(j->key);
        free(j);
        j = next;
    }
}

static int jfail(struct jparser *ps, const char *what)
{
    if (!ps->err[0])
        snprintf(ps->err, sizeof ps->err, "%s at byte %ld", what, (long)(ps->p - ps->start));
    return -1;
}

static void jspace(struct jparser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* A JSON string at ps->p (after the opening quote is checked here), decoded to UTF-8 in a new buffer.
   The decoded text is never longer than the escaped one, so one allocation of that size suffices. */
static char *jstring(struct jparser *ps)
{
    if (ps->p >= ps->end || *ps->p != '"') {
        jfail(ps, "expected a string");
        return NULL;
    }
    ps->p++;
    char *buf = malloc((size_t)(ps->end - ps->p) + 1), *o = buf;
    if (!buf) {
        jfail(ps, "out of memory");
        return NULL;
    }
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char ch = (unsigned char)*ps->p++;
        if (ch < 0x20)
            goto bad;  /* control characters must be escaped in JSON */
        if (ch != '\\') {
            *o++ = (char)ch;
            continue;
        }
        if (ps->p >= ps->end)
            goto bad;
        ch = (unsigned char)*ps->p++;
        switch (ch) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - ps->p < 4 || hex4(ps->p, &cp))
                goto bad;
            ps->p += 4;
            /* a surrogate pair: \uD8xx\uDCxx is one code point above U+FFFF */
            if (cp >= 0xD800 && cp < 0xDC00 && ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u'
                && !hex4(ps->p + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                ps->p += 6;
            }
            if (cp == 0)
                goto bad;  /* an embedded NUL would cut the C string short */
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            goto bad;
        }
    }
    if (ps->p >= ps->end)
        goto bad;
    ps->p++;  /* the closing quote */
    *o = '\0';
    return buf;
bad:
    free(buf);
    jfail(ps, "malformed string");
    return NULL;
}

static struct json *jvalue(struct jparser *ps);

/* the members of an object or the elements of an array, after its opening bracket */
static int jitems(struct jparser *ps, struct json *parent, char close)
{
    struct json **tail = &parent->child;
    jspace(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    for (;;) {
        char *key = NULL;
        jspace(ps);
        if (parent->type == J_OBJ) {
            if (!(key = jstring(ps)))
                return -1;
            jspace(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(key);
                return jfail(ps, "expected ':'");
            }
            ps->p++;
        }
        struct json *item = jvalue(ps);
        if (!item) {
            free(key);
            return -1;
        }
        item->key = key;
        *tail = item;
        tail = &item->next;
        jspace(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return 0;
        }
        return jfail(ps, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int jword(struct jparser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0) {
        ps->p += n;
        return 1;
    }
    return 0;
}

static struct json *jvalue(struct jparser *ps)
{
    struct json *j = calloc(1, sizeof *j);
    if (!j) {
        jfail(ps, "out of memory");
        return NULL;
    }
    jspace(ps);
    if (ps->p >= ps->end) {
        jfail(ps, "unexpected end");
        goto bad;
    }
    char ch = *ps->p;
    if (ch == '{' || ch == '[') {
        if (++ps->depth > 32) {
            jfail(ps, "nested too deeply");
            goto bad;
        }
        ps->p++;
        j->type = ch == '{' ? J_OBJ : J_ARR;
        if (jitems(ps, j, ch == '{' ? '}' : ']'))
            goto bad;
        ps->depth--;
    } else if (ch == '"') {
        j->type = J_STR;
        if (!(j->str = jstring(ps)))
            goto bad;
    } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
        /* strtod reads a superset of JSON's numbers; the text is NUL-terminated by the caller. The
           first character is checked above, so "inf" or "nan" cannot slip in. */
        char *after;
        j->type = J_NUM;
        j->num = strtod(ps->p, &after);
        if (after == ps->p || after > ps->end) {
            jfail(ps, "malformed number");
            goto bad;
        }
        ps->p = after;
    } else if (jword(ps, "true")) {
        j->type = J_BOOL, j->num = 1;
    } else if (jword(ps, "false")) {
        j->type = J_BOOL, j->num = 0;
    } else if (jword(ps, "null")) {
        j->type = J_NULL;
    } else {
        jfail(ps, "unexpected character");
        goto bad;
    }
    return j;
bad:
    json_free(j);
    return NULL;
}

/* Parses text[0..len) (text[len] must be '\0') into a tree, or NULL with a message in err. */
static struct json *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct jparser ps = {text, text, text + len, 0, ""};
    struct json *j = jvalue(&ps);
    if (j) {
        jspace(&ps);
        if (ps.p != ps.end) {
            json_free(j);
            j = NULL;
            jfail(&ps, "trailing characters");
        }
    }
    if (!j)
        say(err, errlen, "%s", ps.err);
    return j;
}

static const struct json *json_get(const struct json *obj, const char *key)
{
    if (!obj || obj->type != J_OBJ)
        return NULL;
    for (const struct json *m = obj->child; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

/* The string member `key` of obj, or NULL when it is absent or not a string. */
static const char *json_str(const struct json *obj, const char *key)
{
    const struct json *m = json_get(obj, key);
    return m && m->type == J_STR ? m->str : NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Growing text buffers (for the headers this program writes) and error messages
 * ------------------------------------------------------------------------------------------------ */

struct text {
    char *s;
    size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int w = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? room : 0, fmt, ap);
        va_end(ap);
        if (w < 0)
            return;
        if (t->s && (size_t)w < room) {
            t->len += (size_t)w;
            return;
        }
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + (size_t)w + 1)
            cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s) {
            fprintf(stderr, "rnn: out of memory\n");
            exit(1);
        }
        t->s = s, t->cap = cap;
    }
}

/* s as a JSON string literal, quotes included */
static void text_add_json_string(struct text *t, const char *s)
{
    text_add(t, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            text_add(t, "\\%c", ch);
        else if (ch < 0x20)
            text_add(t, "\\u%04x", ch);
        else
            text_add(t, "%c", ch);
    }
    text_add(t, "\"");
}

/* ------------------------------------------------------------------------------------------------
 * Named arrays: what a frame carries and what a corpus case holds
 * ------------------------------------------------------------------------------------------------ */

#define MAX_DIMS 8
#define MAX_ARRAYS 64

struct array {
    char name[64];
    int dtype;
    int ndim;
    long shape[MAX_DIMS];
    size_t count;
    void *data;
};

struct arrays {
    int n;
    struct array a[MAX_ARRAYS];
};

static void arrays_free(struct arrays *as)
{
    for (int i = 0; i < as->n; i++)
        free(as->a[i].data);
    as->n = 0;
}

static struct array *arrays_find(struct arrays *as, const char *name)
{
    for (int i = 0; i < as->n; i++)
        if (strcmp(as->a[i].name, name) == 0)
            return &as->a[i];
    return NULL;
}

static void describe_shape(char *buf, size_t len, int ndim, const long *shape)
{
    size_t used = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, ndim == 1 ? "%ld," : (i ? ", %ld" : "%ld"), shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, ")");
}

/* The call's arrays for `method` of `cell` in `dtype`, checked against the contract: every input
   present with its dtype and shape, nothing else sent. The sizes come from x (T, B, I), h0 (B, H)
   and, for the loss, V (K, H). Fills in; returns 0, or -1 with a message naming the array. */
static int bind_inputs(int method, int cell, int dtype, struct arrays *as, struct dims *d,
                       struct call_in *in, char *err, size_t errlen)
{
    struct slot s[32];
    int n = call_slots(method, cell, 0, s);
    struct array *x = arrays_find(as, "x"), *h0 = arrays_find(as, "h0"), *V = arrays_find(as, "V");

    if (!x || x->ndim != 3 || !h0 || h0->ndim != 2 || (method == M_LOSS && (!V || V->ndim != 2))) {
        say(err, errlen, "%s of %s needs x (T, B, I), h0 (B, H)%s", METHOD_NAME[method],
                 CELL_NAME[cell], method == M_LOSS ? " and V (K, H)" : "");
        return -1;
    }
    d->T = (int)x->shape[0], d->B = (int)x->shape[1], d->I = (int)x->shape[2];
    d->H = (int)h0->shape[1];
    d->K = method == M_LOSS ? (int)V->shape[0] : 0;
    if (method == M_LOSS && d->K < 1) {
        say(err, errlen, "V has K = %d rows; the loss needs at least one class", d->K);
        return -1;
    }
    memset(in, 0, sizeof *in);
    for (int i = 0; i < n; i++) {
        struct array *a = arrays_find(as, s[i].name);
        long shape[3];
        int ndim = shape_of(s[i].role, d, shape);
        int want = s[i].role == R_TARGETS ? DT_INT64 : dtype;
        char got[96], expected[96];
        if (!a) {
            say(err, errlen, "%s of %s needs the array '%s', which was not sent", METHOD_NAME[method],
                     CELL_NAME[cell], s[i].name);
            return -1;
        }
        if (a->dtype != want) {
            say(err, errlen, "array '%s' is %s, expected %s", a->name, DTYPE_NAME[a->dtype], DTYPE_NAME[want]);
            return -1;
        }
        if (a->ndim != ndim || memcmp(a->shape, shape, sizeof(long) * (size_t)ndim) != 0) {
            describe_shape(got, sizeof got, a->ndim, a->shape);
            describe_shape(expected, sizeof expected, ndim, shape);
            say(err, errlen, "array '%s' has shape %s, expected %s", a->name, got, expected);
            return -1;
        }
        *in_place(in, &s[i]) = a->data;
    }
    for (int i = 0; i < as->n; i++) {
        int known = 0;
        for (int k = 0; k < n; k++)
            known |= strcmp(as->a[i].name, s[k].name) == 0;
        if (!known) {
            say(err, errlen, "unexpected array '%s' for %s of %s (this client implements no variants)",
                     as->a[i].name, METHOD_NAME[method], CELL_NAME[cell]);
            return -1;
        }
    }
    return 0;
}

/* Allocates the outputs of `method` into res (named, shaped) and points out at them. */
static int make_outputs(int method, int cell, int dtype, const struct dims *d, struct arrays *res,
                        struct call_out *out, char *err, size_t errlen)
{
    struct slot s[32];
    int n = call_slots(method, cell, 1, s);
    memset(out, 0, sizeof *out);
    res->n = 0;
    for (int i = 0; i < n; i++) {
        struct array *a = &res->a[res->n++];
        say(a->name, sizeof a->name, "%s", s[i].name);
        a->dtype = dtype;
        a->ndim = shape_of(s[i].role, d, a->shape);
        a->count = count_of(a->ndim, a->shape);
        /* calloc(0) may return NULL; one extra element keeps "no memory" unambiguous */
        a->data = calloc(a->count + 1, DTYPE_SIZE[dtype]);
        if (!a->data) {
            say(err, errlen, "out of memory for output '%s'", a->name);
            return -1;
        }
        *out_place(out, &s[i]) = a->data;
    }
    return 0;
}

/* The call a protocol header or a corpus case describes, checked; returns 0 or -1 with err. */
static int parse_call(const char *method, const char *cell, const char *activation, const char *variant,
                      const char *dtype, int *m, int *c, int *t, char *err, size_t errlen)
{
    if ((*m = lookup(method, METHOD_NAME, NMETHODS)) < 0) {
        say(err, errlen, "method must be forward, vjp or loss, got %s", method ? method : "nothing");
        return -1;
    }
    if ((*c = lookup(cell, CELL_NAME, NCELLS)) < 0) {
        say(err, errlen, "cell must be elman or lstm (this client implements no other), got %s",
                 cell ? cell : "nothing");
        return -1;
    }
    if ((*t = lookup(dtype, DTYPE_NAME, 2)) < 0) {
        say(err, errlen, "dtype must be float64 or float32, got %s", dtype ? dtype : "nothing");
        return -1;
    }
    /* the LSTM's activations are fixed by the cell; only the Elman cell's f is chosen, and this
       client implements tanh */
    if (*c == CELL_ELMAN && activation && strcmp(activation, "tanh") != 0) {
        say(err, errlen, "activation must be tanh (this client implements no other), got %s", activation);
        return -1;
    }
    if (variant && variant[0]) {
        say(err, errlen, "variant must be empty (this client implements no variants), got %s", variant);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * The process protocol (docs/protocol.md)
 * ------------------------------------------------------------------------------------------------ */

/* a header longer than this is malformed (the protocol's "length past the limit") */
#define MAX_HEADER (16u << 20)
/* and so is one frame's arrays beyond this (1 GiB): far above any case, below any overflow */
#define MAX_PAYLOAD ((size_t)1 << 30)

static int read_exact(FILE *f, void *buf, size_t n)
{
    return fread(buf, 1, n, f) == n ? 0 : -1;
}

/* Reads one frame: its header, parsed, and its arrays into as. Returns 1, 0 at the end of input
   before a frame begins, or -1 with a message in err (the stream cannot be trusted after that). */
static int read_frame(FILE *f, struct json **header, struct arrays *as, char *err, size_t errlen)
{
    unsigned char lenbytes[4];
    size_t got = fread(lenbytes, 1, 4, f);
    *header = NULL;
    as->n = 0;
    if (got == 0 && feof(f))
        return 0;
    if (got != 4) {
        say(err, errlen, "the input ended inside a frame's length");
        return -1;
    }
    /* little-endian whatever the host: assembled byte by byte */
    uint32_t len = (uint32_t)lenbytes[0] | (uint32_t)lenbytes[1] << 8 | (uint32_t)lenbytes[2] << 16
                   | (uint32_t)lenbytes[3] << 24;
    if (len > MAX_HEADER) {
        say(err, errlen, "a header of %lu bytes, more than the %u this client reads",
                 (unsigned long)len, MAX_HEADER);
        return -1;
    }
    char *text = malloc((size_t)len + 1);
    if (!text || read_exact(f, text, len)) {
        free(text);
        say(err, errlen, "the input ended inside a header of %lu bytes", (unsigned long)len);
        return -1;
    }
    text[len] = '\0';
    char jerr[200];
    *header = json_parse(text, len, jerr, sizeof jerr);
    free(text);
    if (!*header || (*header)->type != J_OBJ) {
        say(err, errlen, "the header is not a JSON object (%s)", *header ? "another value" : jerr);
        json_free(*header);
        *header = NULL;
        return -1;
    }
    const struct json *list = json_get(*header, "arrays");
    if (!list)
        return 1;
    if (list->type != J_ARR) {
        say(err, errlen, "\"arrays\" is not a list");
        return -1;
    }
    size_t total = 0;
    for (const struct json *e = list->child; e; e = e->next) {
        const char *name = json_str(e, "name"), *dtype = json_str(e, "dtype");
        const struct json *shape = json_get(e, "shape");
        struct array *a;
        if (as->n == MAX_ARRAYS) {
            say(err, errlen, "more than %d arrays in one frame", MAX_ARRAYS);
            return -1;
        }
        a = &as->a[as->n];
        if (!name || !dtype || !shape || shape->type != J_ARR) {
            say(err, errlen, "an array entry without a name, dtype or shape list");
            return -1;
        }
        if (strlen(name) >= sizeof a->name) {
            say(err, errlen, "an array name longer than %zu bytes", sizeof a->name - 1);
            return -1;
        }
        if ((a->dtype = lookup(dtype, DTYPE_NAME, NDTYPES)) < 0) {
            say(err, errlen, "array '%s' has dtype %s, expected float64, float32 or int64", name, dtype);
            return -1;
        }
        say(a->name, sizeof a->name, "%s", name);
        a->ndim = 0;
        a->count = 1;
        for (const struct json *s = shape->child; s; s = s->next) {
            if (a->ndim == MAX_DIMS || s->type != J_NUM || s->num < 0 || s->num != floor(s->num)
                || s->num > (double)(MAX_PAYLOAD)) {
                say(err, errlen, "array '%s' has a shape that is not a list of at most %d sizes", name, MAX_DIMS);
                return -1;
            }
            a->shape[a->ndim++] = (long)s->num;
            a->count *= (size_t)s->num;
            if (a->count > MAX_PAYLOAD) {
                say(err, errlen, "array '%s' is larger than this client accepts", name);
                return -1;
            }
        }
        total += a->count * DTYPE_SIZE[a->dtype];
        if (total > MAX_PAYLOAD) {
            say(err, errlen, "the frame's arrays are larger than this client accepts");
            return -1;
        }
        a->data = malloc(a->count * DTYPE_SIZE[a->dtype] + 1);
        if (!a->data) {
            say(err, errlen, "out of memory for array '%s'", name);
            return -1;
        }
        as->n++;
        if (read_exact(f, a->data, a->count * DTYPE_SIZE[a->dtype])) {
            say(err, errlen, "the input ended inside array '%s'", name);
            return -1;
        }
    }
    return 1;
}

/* Writes a frame: header is a JSON object's text without its closing brace; the arrays' list is
   appended to it here, then the arrays themselves. Returns 0, or -1 if stdout failed. */
static int write_frame(FILE *f, struct text *header, const struct arrays *as)
{
    if (as && as->n) {
        text_add(header, ", \"arrays\": [");
        for (int i = 0; i < as->n; i++) {
            const struct array *a = &as->a[i];
            text_add(header, "%s{\"name\": ", i ? ", " : "");
            text_add_json_string(header, a->name);
            text_add(header, ", \"dtype\": \"%s\", \"shape\": [", DTYPE_NAME[a->dtype]);
            for (int k = 0; k < a->ndim; k++)
                text_add(header, k ? ", %ld" : "%ld", a->shape[k]);
            text_add(header, "]}");
        }
        text_add(header, "]");
    }
    text_add(header, "}");
    unsigned char lenbytes[4];
    uint32_t len = (uint32_t)header->len;
    for (int i = 0; i < 4; i++)
        lenbytes[i] = (unsigned char)(len >> (8 * i));
    if (fwrite(lenbytes, 1, 4, f) != 4 || fwrite(header->s, 1, header->len, f) != header->len)
        return -1;
    for (int i = 0; as && i < as->n; i++) {
        size_t bytes = as->a[i].count * DTYPE_SIZE[as->a[i].dtype];
        if (fwrite(as->a[i].data, 1, bytes, f) != bytes)
            return -1;
    }
    /* the suite waits for the whole answer before it sends the next call */
    return fflush(f);
}

static int send_error(const char *message)
{
    struct text t = {0};
    text_add(&t, "{\"type\": \"error\", \"message\": ");
    text_add_json_string(&t, message);
    int r = write_frame(stdout, &t, NULL);
    free(t.s);
    return r;
}

#if RNN_BUG
#define CLIENT_NAME "rnnspec C client (clients/c/rnn.c, RNN_BUG=" STR(RNN_BUG) ")"
#else
#define CLIENT_NAME "rnnspec C client (clients/c/rnn.c)"
#endif

static int send_hello(void)
{
    struct text t = {0};
    text_add(&t, "{\"type\": \"hello\", \"protocol\": 1, \"name\": \"%s\", %s", CLIENT_NAME, DECLARATION);
    int r = write_frame(stdout, &t, NULL);
    free(t.s);
    return r;
}

/* Answers one call: the result frame, or an error frame saying why it cannot be computed. */
static int answer_call(const struct json *header, struct arrays *as)
{
    char err[512];
    int m, c, t;
    struct dims d;
    struct call_in in;
    struct call_out out;
    static struct arrays res;  /* static: MAX_ARRAYS entries are too many for a small stack */
    int r;

    res.n = 0;
    if (parse_call(json_str(header, "method"), json_str(header, "cell"), json_str(header, "activation"),
                   json_str(header, "variant"), json_str(header, "dtype"), &m, &c, &t, err, sizeof err)
        || bind_inputs(m, c, t, as, &d, &in, err, sizeof err)
        || make_outputs(m, c, t, &d, &res, &out, err, sizeof err)
        || compute(m, c, t, &d, &in, &out, err, sizeof err)) {
        arrays_free(&res);
        return send_error(err);
    }
    struct text h = {0};
    text_add(&h, "{\"type\": \"result\"");
    r = write_frame(stdout, &h, &res);
    free(h.s);
    arrays_free(&res);
    return r;
}

static int serve(void)
{
    static struct arrays as;
    char err[512];
    for (;;) {
        struct json *header;
        int r = read_frame(stdin, &header, &as, err, sizeof err);
        if (r == 0)
            return 0;  /* the suite closed our stdin: the session is over */
        if (r < 0) {
            /* nothing after a malformed frame can be trusted: say why and stop; the suite restarts us */
            fprintf(stderr, "rnn: malformed frame: %s\n", err);
            json_free(header);
            arrays_free(&as);
            return 1;
        }
        const char *type = json_str(header, "type");
        const struct json *protocol = json_get(header, "protocol");
        int w;
        if (type && strcmp(type, "hello") == 0) {
            if (protocol && (protocol->type != J_NUM || protocol->num != 1)) {
                w = send_error("this client speaks protocol 1 only");
            } else {
                w = send_hello();
            }
        } else if (type && strcmp(type, "call") == 0) {
            w = answer_call(header, &as);
        } else if (type && strcmp(type, "bye") == 0) {
            json_free(header);
            arrays_free(&as);
            return 0;
        } else {
            char message[160];
            snprintf(message, sizeof message, "unknown frame type %.60s, expected hello, call or bye",
                     type ? type : "(none)");
            w = send_error(message);
        }
        json_free(header);
        arrays_free(&as);
        if (w) {
            fprintf(stderr, "rnn: cannot write to stdout: %s\n", strerror(errno));
            return 1;
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * .npy files (format 1.0 written; 1.0 to 3.0 read) and corpus mode (docs/corpus.md)
 * ------------------------------------------------------------------------------------------------ */

/* A file's path into path[0..PATH_MAX_LEN); a path that does not fit is an error, never cut short
   (a cut path would name another file). Returns 0, or -1 with a message in err. */
#define PATH_MAX_LEN 4096
static int path_of(char *path, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(path, PATH_MAX_LEN, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_MAX_LEN) {
        say(err, errlen, "a path longer than %d bytes under %.200s", PATH_MAX_LEN - 1, path);
        return -1;
    }
    return 0;
}

/* Reads path into a. Returns 1, 0 when the file does not exist, or -1 with a message in err. */
static int npy_read(const char *path, const char *name, struct array *a, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char pre[12];
    char *header = NULL;
    if (!f) {
        if (errno == ENOENT)
            return 0;
        say(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* magic (6), version (2), header length: 2 bytes in 1.0, 4 bytes in 2.0 and 3.0 */
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] < 1 || pre[6] > 3)
        goto bad;
    size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (pre[6] > 1) {
        if (fread(pre + 10, 1, 2, f) != 2)
            goto bad;
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hlen > 65536 || !(header = malloc(hlen + 1)) || fread(header, 1, hlen, f) != hlen)
        goto bad;
    header[hlen] = '\0';

    /* the header is a Python dict literal; NumPy writes 'descr', 'fortran_order', 'shape' */
    char *descr = strstr(header, "'descr'"), *fortran = strstr(header, "'fortran_order'");
    char *shape = strstr(header, "'shape'");
    if (!descr || !fortran || !shape)
        goto bad;
    a->dtype = -1;
    for (int t = 0; t < NDTYPES; t++) {
        char quoted[16];
        snprintf(quoted, sizeof quoted, "'%s'", NPY_DESCR[t]);
        if (strncmp(descr + 7 + strspn(descr + 7, ": "), quoted, strlen(quoted)) == 0)
            a->dtype = t;
    }
    if (a->dtype < 0) {
        say(err, errlen, "%s: dtype must be <f8, <f4 or <i8 (little-endian float64, float32, int64)", path);
        goto fail;
    }
    if (strncmp(fortran + 15 + strspn(fortran + 15, ": "), "False", 5) != 0) {
        say(err, errlen, "%s: Fortran order; this reader takes C order only", path);
        goto fail;
    }
    char *p = strchr(shape, '(');
    if (!p)
        goto bad;
    p++;
    a->ndim = 0;
    a->count = 1;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        char *after;
        long v = strtol(p, &after, 10);
        if (after == p || v < 0 || a->ndim == MAX_DIMS)
            goto bad;
        a->shape[a->ndim++] = v;
        a->count *= (size_t)v;
        p = after;
    }
    say(a->name, sizeof a->name, "%s", name);
    size_t bytes = a->count * DTYPE_SIZE[a->dtype];
    if (!(a->data = malloc(bytes + 1)) || fread(a->data, 1, bytes, f) != bytes) {
        free(a->data);
        a->data = NULL;
        goto bad;
    }
    free(header);
    fclose(f);
    return 1;
bad:
    say(err, errlen, "%s: not a .npy file this reader understands (NumPy format 1.0-3.0, "
             "C order, <f8/<f4/<i8), or truncated", path);
fail:
    free(header);
    fclose(f);
    return -1;
}

static int npy_write(const char *path, const struct array *a, char *err, size_t errlen)
{
    char dict[256], shape[160];
    size_t used = 0;
    for (int i = 0; i < a->ndim; i++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%ld, ", a->shape[i]);
    if (a->ndim == 1)
        shape[used - 1] = '\0';  /* "(5,)": NumPy's one-element tuple keeps the comma, drops the space */
    else if (a->ndim > 1)
        shape[used - 2] = '\0';
    else
        shape[0] = '\0';
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     NPY_DESCR[a->dtype], shape);
    /* magic + version + 2-byte length + dict + spaces + '\n' is padded to a multiple of 64, as NumPy
       does, so the data starts aligned */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        say(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xFF),
                             (unsigned char)(hlen >> 8)};
    size_t bytes = a->count * DTYPE_SIZE[a->dtype];
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(a->data, 1, bytes, f) == bytes;
    if (fclose(f) != 0 || !ok) {
        say(err, errlen, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST)
        return 0;
    say(err, errlen, "cannot create %s: %s", path, strerror(errno));
    return -1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Checks that the inputs case.json lists for a method are the ones this client reads for it (a
   difference means the corpus and this client disagree on the contract). Returns 0 or -1 with err. */
static int same_inputs(const struct json *listed, const struct slot *s, int n, const char *method, char *err,
                       size_t errlen)
{
    int count = 0;
    for (const struct json *e = listed->child; e; e = e->next, count++) {
        int known = 0;
        for (int i = 0; i < n; i++)
            known |= e->type == J_STR && strcmp(e->str, s[i].name) == 0;
        if (!known) {
            say(err, errlen, "case.json lists input %s for %s, which this client does not read",
                e->type == J_STR ? e->str : "(not a string)", method);
            return -1;
        }
    }
    if (count != n) {
        say(err, errlen, "case.json lists %d inputs for %s, this client reads %d", count, method, n);
        return -1;
    }
    return 0;
}

/* Runs the methods of one case (the keys of case.json's "inputs"), writing
   OUT/<id>/<method>.<output>.npy. Returns the number of methods run, or -1 with a message in err. */
static int run_case(const char *dir, const char *results, const char *id, char *err, size_t errlen)
{
    char path[PATH_MAX_LEN], jerr[200];
    size_t len;
    static struct arrays as, res;
    int ran = 0, status = 0, m, c, t;

    if (path_of(path, err, errlen, "%s/%s/case.json", dir, id))
        return -1;
    char *text = read_file(path, &len);
    if (!text) {
        say(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct json *cj = json_parse(text, len, jerr, sizeof jerr);
    free(text);
    if (!cj || cj->type != J_OBJ) {
        say(err, errlen, "%s: not a JSON object (%s)", path, cj ? "another value" : jerr);
        json_free(cj);
        return -1;
    }
    const struct json *methods = json_get(cj, "inputs");
    if (!methods || methods->type != J_OBJ) {
        say(err, errlen, "%s: no \"inputs\" object (method -> input names; docs/corpus.md)", path);
        json_free(cj);
        return -1;
    }
    if (parse_call("forward", json_str(cj, "cell"), json_str(cj, "activation"), json_str(cj, "variant"),
                   json_str(cj, "dtype"), &m, &c, &t, err, errlen)
        || path_of(path, err, errlen, "%s/%s", results, id) || make_dir(path, err, errlen)) {
        json_free(cj);
        return -1;
    }
    for (const struct json *entry = methods->child; entry && status == 0; entry = entry->next) {
        struct slot s[32];
        struct dims d;
        struct call_in in;
        struct call_out out;
        int n;
        if ((m = lookup(entry->key, METHOD_NAME, NMETHODS)) < 0 || entry->type != J_ARR) {
            say(err, errlen, "case.json's inputs has %s, expected forward, vjp or loss with a list of names",
                entry->key);
            status = -1;
            break;
        }
        n = call_slots(m, c, 0, s);
        if (same_inputs(entry, s, n, entry->key, err, errlen)) {
            status = -1;
            break;
        }
        arrays_free(&as);
        for (int i = 0; i < n && status == 0; i++) {
            int r = path_of(path, err, errlen, "%s/%s/%s.npy", dir, id, s[i].name) ? -1
                    : npy_read(path, s[i].name, &as.a[as.n], err, errlen);
            if (r == 0)
                say(err, errlen, "%s: missing", path);
            if (r <= 0)
                status = -1;
            else
                as.n++;
        }
        if (status || bind_inputs(m, c, t, &as, &d, &in, err, errlen)
            || make_outputs(m, c, t, &d, &res, &out, err, errlen) || compute(m, c, t, &d, &in, &out, err, errlen)) {
            status = -1;
            break;
        }
        for (int i = 0; i < res.n && status == 0; i++)
            status = path_of(path, err, errlen, "%s/%s/%s.%s.npy", results, id, METHOD_NAME[m], res.a[i].name)
                     || npy_write(path, &res.a[i], err, errlen) ? -1 : 0;
        arrays_free(&res);
        ran++;
    }
    json_free(cj);
    arrays_free(&as);
    arrays_free(&res);
    return status ? -1 : ran;
}

static int corpus(const char *dir, const char *results)
{
    char path[PATH_MAX_LEN], err[1024], line[1024];
    int cases = 0, failed = 0;

    if (path_of(path, err, sizeof err, "%s/cases.txt", dir)) {
        fprintf(stderr, "rnn: --corpus: %s\n", err);
        return 2;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "rnn: --corpus: cannot read %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (make_dir(results, err, sizeof err)) {
        fprintf(stderr, "rnn: --results: %s\n", err);
        fclose(f);
        return 2;
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        if (strchr(line, '/') || strcmp(line, "..") == 0) {
            fprintf(stderr, "rnn: %s: case id '%s' is not a plain name\n", path, line);
            failed++;
            continue;
        }
        cases++;
        /* one case that cannot be answered leaves its results missing (the judge reports them) and
           the others are still answered */
        if (run_case(dir, results, line, err, sizeof err) < 0) {
            fprintf(stderr, "rnn: case %s: %s\n", line, err);
            failed++;
        }
    }
    fclose(f);
    fprintf(stderr, "rnn: %d cases answered, %d failed, results in %s\n", cases - failed, failed, results);
    return failed ? 1 : 0;
}

static int little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *results = NULL;
    if (!little_endian()) {
        fprintf(stderr, "rnn: this client assumes a little-endian host (the protocol's and .npy's byte order)\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--corpus") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--results") == 0 && i + 1 < argc)
            results = argv[++i];
        else {
            fprintf(stderr, "usage: %s                               (the process protocol on stdin/stdout)\n"
                            "       %s --corpus DIR --results OUT    (answer a case corpus)\n"
                            "got argument '%s'\n", argv[0], argv[0], argv[i]);
            return 2;
        }
    }
    if (dir || results) {
        if (!dir || !results) {
            fprintf(stderr, "rnn: corpus mode needs both --corpus DIR and --results OUT\n");
            return 2;
        }
        return corpus(dir, results);
    }
    return serve();
}

#endif /* RNN_LIBRARY */
