/*
 * The SQLite queue's group commit off the interpreter lock (docs/mcp-retries.md).
 *
 * A Committer owns one connection to the queue file and a thread that never holds the lock: the
 * loop hands it saves, claims and acks (their text kept alive by references, read without the
 * lock), the thread commits every write waiting in one transaction, and a byte on a pipe tells the
 * loop that results wait (take()). The lock is needed only to hand writes over and to turn results
 * into Python objects, so the loop's Python and the store's SQLite run at the same time.
 *
 * SQLite itself is the library Python's sqlite3 module uses, found in the loaded _sqlite3 module:
 * one SQLite in the process, so its locks on the file stay coherent across both connections. Where
 * that library cannot be found (or on Windows), load() fails and the queue stays in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef _WIN32
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef void (*destructor_fn)(void *);

#define SQ_OK 0
#define SQ_ROW 100
#define SQ_DONE 101
#define SQ_OPEN_READWRITE 0x00000002
#define SQ_OPEN_NOMUTEX 0x00008000
#define SQ_STATIC ((destructor_fn)0)

static struct {
    int loaded;
    int (*open_v2)(const char *, sqlite3 **, int, const char *);
    int (*close_v2)(sqlite3 *);
    int (*exec)(sqlite3 *, const char *, void *, void *, char **);
    int (*prepare_v2)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
    int (*bind_text)(sqlite3_stmt *, int, const char *, int, destructor_fn);
    int (*bind_double)(sqlite3_stmt *, int, double);
    int (*bind_int64)(sqlite3_stmt *, int, long long);
    int (*step)(sqlite3_stmt *);
    int (*reset)(sqlite3_stmt *);
    int (*finalize)(sqlite3_stmt *);
    int (*changes)(sqlite3 *);
    const unsigned char *(*column_text)(sqlite3_stmt *, int);
    int (*column_bytes)(sqlite3_stmt *, int);
    long long (*column_int64)(sqlite3_stmt *, int);
    const char *(*errmsg)(sqlite3 *);
    int (*extended_errcode)(sqlite3 *);
    int (*threadsafe)(void);
    const char *(*libversion)(void);
    void (*free)(void *);
} S;

enum { OP_PUT = 1, OP_CLAIM = 2, OP_ACK = 3 };

typedef struct Op {
    struct Op *next;
    int kind;
    long long token;
    PyObject *keep; /* what holds the texts below alive until the op is taken */
    Py_ssize_t n;
    const char **a; /* ids */
    Py_ssize_t *alen;
    const char **b; /* payloads */
    Py_ssize_t *blen;
    double *due;
    double now, until;
    long long limit;
    const char *lease;
    Py_ssize_t lease_len;
    /* results */
    int ok;
    int errcode;
    char *errmsg;
    unsigned char *flags; /* put: new or not, per row */
    long long count;      /* ack: rows deleted */
    Py_ssize_t nrows;     /* claim: rows */
    Py_ssize_t cap;
    char **rid;
    int *rid_len;
    char **rpay;
    int *rpay_len;
    long long *ratt;
} Op;

typedef struct {
    PyObject_HEAD
    sqlite3 *db;
    sqlite3_stmt *st_begin, *st_commit, *st_rollback, *st_put, *st_claim, *st_ack;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int mu_ready;
    Op *pending, *pending_tail;
    Op *done, *done_tail;
    int closing;
    int serving; /* serve() entered */
    int closed;  /* the connection is closed */
    int wake_fd;
    long long groups, ops;
} Committer;

static void op_free(Op *op) {
    /* Needs the lock: drops the references that kept the texts alive. */
    Py_XDECREF(op->keep);
    PyMem_RawFree(op->a);
    PyMem_RawFree(op->alen);
    PyMem_RawFree(op->b);
    PyMem_RawFree(op->blen);
    PyMem_RawFree(op->due);
    PyMem_RawFree(op->errmsg);
    PyMem_RawFree(op->flags);
    for (Py_ssize_t i = 0; i < op->nrows; i++) {
        PyMem_RawFree(op->rid[i]);
        PyMem_RawFree(op->rpay[i]);
    }
    PyMem_RawFree(op->rid);
    PyMem_RawFree(op->rid_len);
    PyMem_RawFree(op->rpay);
    PyMem_RawFree(op->rpay_len);
    PyMem_RawFree(op->ratt);
    PyMem_RawFree(op);
}

/* -- loading SQLite ---------------------------------------------------------------------------- */

static PyObject *native_load(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    if (S.loaded)
        return PyUnicode_FromString(S.libversion());
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL) {
        PyErr_Format(PyExc_OSError, "the sqlite3 module is not loaded from %s", path);
        return NULL;
    }
#define SYM(field, name)                                                                         \
    do {                                                                                         \
        *(void **)(&S.field) = dlsym(h, name);                                                   \
        if (S.field == NULL) {                                                                   \
            PyErr_Format(PyExc_OSError, "%s not found beside the sqlite3 module", name);         \
            return NULL;                                                                         \
        }                                                                                        \
    } while (0)
    SYM(open_v2, "sqlite3_open_v2");
    SYM(close_v2, "sqlite3_close_v2");
    SYM(exec, "sqlite3_exec");
    SYM(prepare_v2, "sqlite3_prepare_v2");
    SYM(bind_text, "sqlite3_bind_text");
    SYM(bind_double, "sqlite3_bind_double");
    SYM(bind_int64, "sqlite3_bind_int64");
    SYM(step, "sqlite3_step");
    SYM(reset, "sqlite3_reset");
    SYM(finalize, "sqlite3_finalize");
    SYM(changes, "sqlite3_changes");
    SYM(column_text, "sqlite3_column_text");
    SYM(column_bytes, "sqlite3_column_bytes");
    SYM(column_int64, "sqlite3_column_int64");
    SYM(errmsg, "sqlite3_errmsg");
    SYM(extended_errcode, "sqlite3_extended_errcode");
    SYM(threadsafe, "sqlite3_threadsafe");
    SYM(libversion, "sqlite3_libversion");
    SYM(free, "sqlite3_free");
#undef SYM
    /* The handle stays open: the module keeps the library loaded for the process's life. */
    if (S.threadsafe() == 0) {
        PyErr_SetString(PyExc_OSError, "SQLite was built without thread support");
        return NULL;
    }
    S.loaded = 1;
    return PyUnicode_FromString(S.libversion());
}

/* -- the Committer ------------------------------------------------------------------------------ */

static void set_error(Committer *c, const char *what) {
    PyErr_Format(PyExc_OSError, "%s: %s (SQLite code %d)", what,
                 c->db ? S.errmsg(c->db) : "no connection", c->db ? S.extended_errcode(c->db) : 0);
}

static void close_db(Committer *c) {
    sqlite3_stmt **all[] = {&c->st_begin, &c->st_commit, &c->st_rollback,
                            &c->st_put,   &c->st_claim,  &c->st_ack};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (*all[i] != NULL) {
            S.finalize(*all[i]);
            *all[i] = NULL;
        }
    }
    if (c->db != NULL) {
        S.close_v2(c->db);
        c->db = NULL;
    }
    c->closed = 1;
}

static int Committer_init(Committer *c, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", "setup", "insert", "claim", "ack", "wake_fd", NULL};
    PyObject *path;
    const char *setup, *insert, *claim, *ack;
    int wake_fd;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&ssssi", kwlist, PyUnicode_FSConverter, &path,
                                     &setup, &insert, &claim, &ack, &wake_fd))
        return -1;
    if (!S.loaded) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_RuntimeError, "load() SQLite first");
        return -1;
    }
    if (c->db != NULL || c->mu_ready) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_RuntimeError, "a Committer is initialised once");
        return -1;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = S.open_v2(PyBytes_AS_STRING(path), &c->db, SQ_OPEN_READWRITE | SQ_OPEN_NOMUTEX, NULL);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (rc != SQ_OK) {
        set_error(c, "cannot open the queue file");
        close_db(c);
        return -1;
    }
    char *err = NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = S.exec(c->db, setup, NULL, NULL, &err);
    Py_END_ALLOW_THREADS
    if (rc != SQ_OK) {
        PyErr_Format(PyExc_OSError, "cannot set the queue connection up: %s",
                     err ? err : "unknown error");
        S.free(err);
        close_db(c);
        return -1;
    }
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {{&c->st_begin, "BEGIN IMMEDIATE"}, {&c->st_commit, "COMMIT"},
                 {&c->st_rollback, "ROLLBACK"},     {&c->st_put, insert},
                 {&c->st_claim, claim},             {&c->st_ack, ack}};
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        if (S.prepare_v2(c->db, stmts[i].sql, -1, stmts[i].st, NULL) != SQ_OK) {
            set_error(c, "cannot prepare a queue statement");
            close_db(c);
            return -1;
        }
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0 || pthread_cond_init(&c->cv, NULL) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot create the committer's lock");
        close_db(c);
        return -1;
    }
    c->mu_ready = 1;
    c->wake_fd = wake_fd;
    c->closed = 0;
    return 0;
}

static void Committer_dealloc(Committer *c) {
    /* serve() has returned (its thread holds a reference while it runs), or never ran. */
    Op *lists[] = {c->pending, c->done};
    for (int k = 0; k < 2; k++) {
        for (Op *op = lists[k]; op != NULL;) {
            Op *next = op->next;
            op_free(op);
            op = next;
        }
    }
    c->pending = c->done = NULL;
    if (!c->closed)
        close_db(c);
    if (c->mu_ready) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
    }
    Py_TYPE(c)->tp_free((PyObject *)c);
}

/* On the committer's thread, without the interpreter lock. */

static int fail_op(Committer *c, Op *op) {
    op->errcode = S.extended_errcode(c->db);
    const char *m = S.errmsg(c->db);
    size_t len = strlen(m);
    op->errmsg = PyMem_RawMalloc(len + 1);
    if (op->errmsg != NULL)
        memcpy(op->errmsg, m, len + 1);
    return -1;
}

static int run_put(Committer *c, Op *op) {
    op->flags = PyMem_RawCalloc(op->n ? op->n : 1, 1);
    if (op->flags == NULL)
        return -1;
    sqlite3_stmt *st = c->st_put;
    for (Py_ssize_t i = 0; i < op->n; i++) {
        S.bind_text(st, 1, op->a[i], (int)op->alen[i], SQ_STATIC);
        S.bind_text(st, 2, op->b[i], (int)op->blen[i], SQ_STATIC);
        S.bind_double(st, 3, op->due[i]);
        S.bind_double(st, 4, op->now);
        int rc = S.step(st);
        if (rc != SQ_DONE) {
            fail_op(c, op);
            S.reset(st);
            return -1;
        }
        op->flags[i] = S.changes(c->db) == 1;
        S.reset(st);
    }
    return 0;
}

static int grow_rows(Op *op) {
    Py_ssize_t cap = op->cap ? op->cap * 2 : 64;
    char **rid = PyMem_RawRealloc(op->rid, cap * sizeof(char *));
    if (rid == NULL)
        return -1;
    op->rid = rid;
    char **rpay = PyMem_RawRealloc(op->rpay, cap * sizeof(char *));
    if (rpay == NULL)
        return -1;
    op->rpay = rpay;
    int *rid_len = PyMem_RawRealloc(op->rid_len, cap * sizeof(int));
    if (rid_len == NULL)
        return -1;
    op->rid_len = rid_len;
    int *rpay_len = PyMem_RawRealloc(op->rpay_len, cap * sizeof(int));
    if (rpay_len == NULL)
        return -1;
    op->rpay_len = rpay_len;
    long long *ratt = PyMem_RawRealloc(op->ratt, cap * sizeof(long long));
    if (ratt == NULL)
        return -1;
    op->ratt = ratt;
    op->cap = cap;
    return 0;
}

static char *copy_text(sqlite3_stmt *st, int col, int *len) {
    const unsigned char *t = S.column_text(st, col);
    int n = t == NULL ? 0 : S.column_bytes(st, col); /* NULL: an SQL NULL (or no memory) */
    char *out = PyMem_RawMalloc((size_t)n + 1);
    if (out == NULL)
        return NULL;
    if (n)
        memcpy(out, t, (size_t)n);
    out[n] = 0;
    *len = n;
    return out;
}

static int run_claim(Committer *c, Op *op) {
    sqlite3_stmt *st = c->st_claim;
    S.bind_text(st, 1, op->lease, (int)op->lease_len, SQ_STATIC);
    S.bind_double(st, 2, op->until);
    S.bind_double(st, 3, op->now);
    S.bind_int64(st, 4, op->limit);
    for (;;) {
        int rc = S.step(st);
        if (rc == SQ_DONE)
            break;
        if (rc != SQ_ROW) {
            fail_op(c, op);
            S.reset(st);
            return -1;
        }
        if (op->nrows == op->cap && grow_rows(op) != 0) {
            S.reset(st);
            return -1;
        }
        Py_ssize_t k = op->nrows;
        op->rid[k] = copy_text(st, 0, &op->rid_len[k]);
        op->rpay[k] = op->rid[k] ? copy_text(st, 1, &op->rpay_len[k]) : NULL;
        if (op->rpay[k] == NULL) {
            PyMem_RawFree(op->rid[k]);
            S.reset(st);
            return -1;
        }
        op->ratt[k] = S.column_int64(st, 2);
        op->nrows++;
    }
    S.reset(st);
    return 0;
}

static int run_ack(Committer *c, Op *op) {
    sqlite3_stmt *st = c->st_ack;
    for (Py_ssize_t i = 0; i < op->n; i++) {
        S.bind_text(st, 1, op->a[i], (int)op->alen[i], SQ_STATIC);
        int rc = S.step(st);
        if (rc != SQ_DONE) {
            fail_op(c, op);
            S.reset(st);
            return -1;
        }
        op->count += S.changes(c->db);
        S.reset(st);
    }
    return 0;
}

static int step_once(sqlite3_stmt *st) {
    int rc = S.step(st);
    S.reset(st);
    return rc == SQ_DONE ? 0 : -1;
}

static void clear_results(Op *op) {
    PyMem_RawFree(op->flags);
    op->flags = NULL;
    for (Py_ssize_t i = 0; i < op->nrows; i++) {
        PyMem_RawFree(op->rid[i]);
        PyMem_RawFree(op->rpay[i]);
    }
    op->nrows = 0;
    op->count = 0;
}

/* Every op of the group in one transaction; on any failure none is committed and each is marked
 * failed (the Python side runs them again one by one, each meeting its own outcome). */
static void run_group(Committer *c, Op *group) {
    int failed = 0;
    int errcode = 0;
    char *errmsg = NULL;
    Op *culprit = NULL;
    if (step_once(c->st_begin) != 0) {
        failed = 1;
        errcode = S.extended_errcode(c->db);
    } else {
        for (Op *op = group; op != NULL; op = op->next) {
            int rc = op->kind == OP_PUT     ? run_put(c, op)
                     : op->kind == OP_CLAIM ? run_claim(c, op)
                                            : run_ack(c, op);
            if (rc != 0) {
                failed = 1;
                culprit = op;
                break;
            }
        }
        if (!failed && step_once(c->st_commit) != 0) {
            failed = 1;
            errcode = S.extended_errcode(c->db);
        }
        if (failed)
            step_once(c->st_rollback);
    }
    if (failed && culprit != NULL) {
        errcode = culprit->errcode;
        errmsg = culprit->errmsg;
        culprit->errmsg = NULL;
    } else if (failed) {
        const char *m = S.errmsg(c->db);
        size_t len = strlen(m);
        errmsg = PyMem_RawMalloc(len + 1);
        if (errmsg != NULL)
            memcpy(errmsg, m, len + 1);
    }
    for (Op *op = group; op != NULL; op = op->next) {
        if (failed) {
            clear_results(op);
            op->ok = 0;
            op->errcode = errcode;
            PyMem_RawFree(op->errmsg);
            op->errmsg = NULL;
            if (errmsg != NULL) {
                size_t len = strlen(errmsg);
                op->errmsg = PyMem_RawMalloc(len + 1);
                if (op->errmsg != NULL)
                    memcpy(op->errmsg, errmsg, len + 1);
            }
        } else {
            op->ok = 1;
        }
    }
    PyMem_RawFree(errmsg);
}

static PyObject *Committer_serve(Committer *c, PyObject *unused) {
    if (!c->mu_ready || c->closed) {
        PyErr_SetString(PyExc_RuntimeError, "the committer is closed");
        return NULL;
    }
    pthread_mutex_lock(&c->mu);
    if (c->serving) {
        pthread_mutex_unlock(&c->mu);
        PyErr_SetString(PyExc_RuntimeError, "the committer is served already");
        return NULL;
    }
    c->serving = 1;
    pthread_mutex_unlock(&c->mu);
    Py_INCREF(c);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->pending == NULL && !c->closing)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->pending == NULL)
            break; /* closing, and every write handed over has been committed */
        Op *group = c->pending;
        c->pending = c->pending_tail = NULL;
        pthread_mutex_unlock(&c->mu);

        run_group(c, group);

        Op *last = group;
        long long n = 1;
        while (last->next != NULL) {
            last = last->next;
            n++;
        }
        pthread_mutex_lock(&c->mu);
        c->groups++;
        c->ops += n;
        int was_empty = c->done == NULL;
        if (was_empty)
            c->done = group;
        else
            c->done_tail->next = group;
        c->done_tail = last;
        if (was_empty) {
            char one = 1;
            ssize_t w;
            do {
                w = write(c->wake_fd, &one, 1);
            } while (w < 0 && errno == EINTR);
            /* EAGAIN: a byte is waiting already, which is all the loop needs. */
        }
    }
    pthread_mutex_unlock(&c->mu);
    close_db(c);
    Py_END_ALLOW_THREADS
    Py_DECREF(c);
    Py_RETURN_NONE;
}

static int hand_over(Committer *c, Op *op) {
    pthread_mutex_lock(&c->mu);
    if (c->closing || c->closed) {
        pthread_mutex_unlock(&c->mu);
        PyErr_SetString(PyExc_RuntimeError, "the committer is closed");
        return -1;
    }
    op->next = NULL;
    if (c->pending == NULL)
        c->pending = op;
    else
        c->pending_tail->next = op;
    c->pending_tail = op;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static Op *new_op(int kind, long long token, Py_ssize_t n) {
    Op *op = PyMem_RawCalloc(1, sizeof(Op));
    if (op == NULL)
        return NULL;
    op->kind = kind;
    op->token = token;
    op->n = n;
    if (n > 0) {
        op->a = PyMem_RawMalloc(n * sizeof(char *));
        op->alen = PyMem_RawMalloc(n * sizeof(Py_ssize_t));
        if (op->a == NULL || op->alen == NULL) {
            op_free(op);
            return NULL;
        }
    }
    return op;
}

static int text_of(PyObject *s, const char **out, Py_ssize_t *len) {
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "ids and payloads are str");
        return -1;
    }
    *out = PyUnicode_AsUTF8AndSize(s, len);
    if (*out == NULL)
        return -1;
    if (*len > 0x7fffffff) {
        PyErr_SetString(PyExc_OverflowError, "a text too long for SQLite");
        return -1;
    }
    return 0;
}

/* put(token, rows, now): rows a list of (id, payload, due_at). */
static PyObject *Committer_put(Committer *c, PyObject *args) {
    long long token;
    PyObject *rows;
    double now;
    if (!PyArg_ParseTuple(args, "LO!d", &token, &PyList_Type, &rows, &now))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    Op *op = new_op(OP_PUT, token, n);
    if (op == NULL)
        return PyErr_NoMemory();
    op->now = now;
    op->b = PyMem_RawMalloc((n ? n : 1) * sizeof(char *));
    op->blen = PyMem_RawMalloc((n ? n : 1) * sizeof(Py_ssize_t));
    op->due = PyMem_RawMalloc((n ? n : 1) * sizeof(double));
    if (op->b == NULL || op->blen == NULL || op->due == NULL) {
        op_free(op);
        return PyErr_NoMemory();
    }
    /* A copy of the list: the texts stay referenced whatever the caller does with its list. */
    op->keep = PyList_GetSlice(rows, 0, n);
    if (op->keep == NULL) {
        op_free(op);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(op->keep, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 3) {
            PyErr_SetString(PyExc_TypeError, "a row is (id, payload, due_at)");
            op_free(op);
            return NULL;
        }
        if (text_of(PyTuple_GET_ITEM(row, 0), &op->a[i], &op->alen[i]) != 0 ||
            text_of(PyTuple_GET_ITEM(row, 1), &op->b[i], &op->blen[i]) != 0) {
            op_free(op);
            return NULL;
        }
        op->due[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(row, 2));
        if (op->due[i] == -1.0 && PyErr_Occurred()) {
            op_free(op);
            return NULL;
        }
    }
    if (hand_over(c, op) != 0) {
        op_free(op);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* claim(token, lease, until, now, limit) */
static PyObject *Committer_claim(Committer *c, PyObject *args) {
    long long token, limit;
    PyObject *lease;
    double until, now;
    if (!PyArg_ParseTuple(args, "LUddL", &token, &lease, &until, &now, &limit))
        return NULL;
    Op *op = new_op(OP_CLAIM, token, 0);
    if (op == NULL)
        return PyErr_NoMemory();
    Py_INCREF(lease);
    op->keep = lease;
    if (text_of(lease, &op->lease, &op->lease_len) != 0) {
        op_free(op);
        return NULL;
    }
    op->until = until;
    op->now = now;
    op->limit = limit;
    if (hand_over(c, op) != 0) {
        op_free(op);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ack(token, ids): ids a list of str. */
static PyObject *Committer_ack(Committer *c, PyObject *args) {
    long long token;
    PyObject *ids;
    if (!PyArg_ParseTuple(args, "LO!", &token, &PyList_Type, &ids))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(ids);
    Op *op = new_op(OP_ACK, token, n);
    if (op == NULL)
        return PyErr_NoMemory();
    op->keep = PyList_GetSlice(ids, 0, n);
    if (op->keep == NULL) {
        op_free(op);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (text_of(PyList_GET_ITEM(op->keep, i), &op->a[i], &op->alen[i]) != 0) {
            op_free(op);
            return NULL;
        }
    }
    if (hand_over(c, op) != 0) {
        op_free(op);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *result_of(Op *op) {
    if (!op->ok) {
        return Py_BuildValue("(LO(is))", op->token, Py_False, op->errcode,
                             op->errmsg ? op->errmsg : "the group commit failed");
    }
    PyObject *value = NULL;
    if (op->kind == OP_PUT) {
        value = PyList_New(op->n);
        if (value == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < op->n; i++) {
            PyObject *b = op->flags[i] ? Py_True : Py_False;
            Py_INCREF(b);
            PyList_SET_ITEM(value, i, b);
        }
    } else if (op->kind == OP_ACK) {
        value = PyLong_FromLongLong(op->count);
    } else {
        value = PyList_New(op->nrows);
        if (value == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < op->nrows; i++) {
            PyObject *row = Py_BuildValue("(s#s#L)", op->rid[i], (Py_ssize_t)op->rid_len[i],
                                          op->rpay[i], (Py_ssize_t)op->rpay_len[i], op->ratt[i]);
            if (row == NULL) {
                Py_DECREF(value);
                return NULL;
            }
            PyList_SET_ITEM(value, i, row);
        }
    }
    if (value == NULL)
        return NULL;
    PyObject *out = Py_BuildValue("(LON)", op->token, Py_True, value);
    return out;
}

/* take() -> [(token, ok, value)]: the results committed (or failed) since the last take. */
static PyObject *Committer_take(Committer *c, PyObject *unused) {
    if (!c->mu_ready)
        return PyList_New(0);
    pthread_mutex_lock(&c->mu);
    Op *done = c->done;
    c->done = c->done_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    PyObject *out = PyList_New(0);
    Op *op = done;
    while (op != NULL) {
        Op *next = op->next;
        if (out != NULL) {
            PyObject *r = result_of(op);
            if (r == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
                /* A row another program wrote that is not UTF-8: this write fails (its caller
                 * runs it again on the Python path) rather than every result being lost. */
                PyErr_Clear();
                r = Py_BuildValue("(LO(is))", op->token, Py_False, 0,
                                  "a row read back is not valid UTF-8 text");
            }
            if (r == NULL || PyList_Append(out, r) != 0) {
                Py_CLEAR(out);
            }
            Py_XDECREF(r);
        }
        op_free(op);
        op = next;
    }
    return out;
}

/* close(): no more writes; serve() commits those handed over, closes the connection, returns. */
static PyObject *Committer_close(Committer *c, PyObject *unused) {
    if (!c->mu_ready)
        Py_RETURN_NONE;
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    Py_RETURN_NONE;
}

static PyObject *Committer_counts(Committer *c, PyObject *unused) {
    return Py_BuildValue("(LL)", c->groups, c->ops);
}

static PyMethodDef Committer_methods[] = {
    {"serve", (PyCFunction)Committer_serve, METH_NOARGS,
     "Commit what is handed over until closed (on a thread of its own; no interpreter lock)."},
    {"put", (PyCFunction)Committer_put, METH_VARARGS, "put(token, rows, now)"},
    {"claim", (PyCFunction)Committer_claim, METH_VARARGS, "claim(token, lease, until, now, limit)"},
    {"ack", (PyCFunction)Committer_ack, METH_VARARGS, "ack(token, ids)"},
    {"take", (PyCFunction)Committer_take, METH_NOARGS, "The results ready: [(token, ok, value)]."},
    {"close", (PyCFunction)Committer_close, METH_NOARGS, "No more writes; serve() returns."},
    {"counts", (PyCFunction)Committer_counts, METH_NOARGS, "(groups, ops) committed so far."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CommitterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "safla_diag.mcp_retry._native.Committer",
    .tp_basicsize = sizeof(Committer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Committer_init,
    .tp_dealloc = (destructor)Committer_dealloc,
    .tp_methods = Committer_methods,
    .tp_doc = "One connection to the queue file and the group commit of its thread.",
};

/* -- the check of every save (_encode._plain, in C) ------------------------------------------- */

#define PLAIN_MAX_DEPTH 64 /* _encode._MAX_DEPTH */

/* Whether a value is plain JSON: exact dicts with exact str keys, lists, tuples, str, int, bool,
 * None and finite floats, containers nested at most PLAIN_MAX_DEPTH deep. Exact types only, as in
 * Python: anything else (a subclass, a Mapping) is for _encode._check_json to decide. No Python
 * code runs here, so nothing can change the containers while they are read; the depth bounds the
 * recursion. */
static int plain_of(PyObject *v, int depth) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type || t == &PyLong_Type || t == &PyBool_Type || v == Py_None)
        return 1;
    if (t == &PyFloat_Type)
        return isfinite(PyFloat_AS_DOUBLE(v)) != 0;
    if (t != &PyDict_Type && t != &PyList_Type && t != &PyTuple_Type)
        return 0;
    if (depth >= PLAIN_MAX_DEPTH)
        return 0;
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(v, &pos, &key, &value)) {
            if (Py_TYPE(key) != &PyUnicode_Type || !plain_of(value, depth + 1))
                return 0;
        }
        return 1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
    PyObject **items = PySequence_Fast_ITEMS(v);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!plain_of(items[i], depth + 1))
            return 0;
    }
    return 1;
}

static PyObject *native_plain(PyObject *self, PyObject *value) {
    return PyBool_FromLong(plain_of(value, 0));
}

static PyMethodDef module_methods[] = {
    {"load", native_load, METH_VARARGS,
     "load(path of the _sqlite3 module) -> SQLite's version: use the SQLite it loaded."},
    {"plain", native_plain, METH_O,
     "plain(value) -> whether it is plain JSON a save may encode without the full check."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_native", "The SQLite queue's group commit off the interpreter lock.",
    -1, module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&CommitterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CommitterType);
    if (PyModule_AddObject(m, "Committer", (PyObject *)&CommitterType) < 0) {
        Py_DECREF(&CommitterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#else /* _WIN32: the queue stays in Python */

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&moduledef); }

#endif
