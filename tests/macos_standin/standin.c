/*
 * A stand-in for the parts of CoreFoundation.framework and Security.framework
 * that truststore._macos calls, so that the macOS backend can be exercised on
 * Linux.  See README.md beside this file for what is modelled and why.
 *
 * Rules this file follows, all taken from Apple's documentation:
 *
 *   - Every object is reference counted.  "Create"/"Copy" functions return an
 *     object the caller owns (+1); "Get" functions do not transfer ownership.
 *   - CFRetain/CFRelease of NULL, of something that is not a CF object, or of
 *     an object already released crash on Apple's side; here they abort() with
 *     a message on stderr, which is the point of the stand-in: a backend bug
 *     becomes a test failure instead of silent memory corruption.
 *   - Trust evaluation returns the OSStatus codes documented in SecBase.h and
 *     the SecTrustResultType values documented in SecTrust.h; the CFError of
 *     SecTrustEvaluateWithError has domain NSOSStatusErrorDomain, the OSStatus
 *     as its code and a description shaped like the ones macOS prints
 *     ("“name” certificate is expired").
 *
 * Trust decisions are made by OpenSSL's X509 verifier (chain building to the
 * anchors, signatures, validity period, host name or IP address, key usage
 * purpose, CRLs), plus the TLS server certificate rules Apple added in macOS
 * 10.15 (validity period cap, mandatory serverAuth EKU).
 *
 * Missing intermediates can be "downloaded" from the issuer URL in a
 * certificate's Authority Information Access extension (caIssuers), as
 * Apple's trustd does when network fetch is allowed: the "network" is a map
 * of URL -> bytes the tests fill (standin_network_add); nothing leaves the
 * process.  Network fetch follows SecTrustSetNetworkFetchAllowed (default: on
 * when an SSL policy is present) and also gates revocation answers (CRLs).
 *
 * Build: gcc -shared -fPIC -fvisibility=hidden standin.c -lcrypto -pthread
 * Define STANDIN_NO_EVALUATE_WITH_ERROR to leave SecTrustEvaluateWithError out,
 * like macOS 10.13 and older, where only SecTrustEvaluate exists.  Define
 * STANDIN_NO_NETWORK_FETCH_CONTROL to leave SecTrustSetNetworkFetchAllowed and
 * SecTrustGetNetworkFetchAllowed out, like macOS before 10.9.
 */

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- CoreFoundation / Security scalar types (CFBase.h, SecBase.h) ------- */

typedef signed long CFIndex;
typedef unsigned long CFTypeID;
typedef unsigned long CFOptionFlags;
typedef unsigned char Boolean;
typedef uint8_t UInt8;
typedef uint32_t CFStringEncoding;
typedef int32_t OSStatus;
typedef uint32_t SecTrustResultType;
typedef const void *CFTypeRef;
typedef const void *CFAllocatorRef;
typedef const void *CFDataRef;
typedef const void *CFArrayRef;
typedef void *CFMutableArrayRef;
typedef const void *CFStringRef;
typedef void *CFErrorRef;
typedef void *SecCertificateRef;
typedef void *SecPolicyRef;
typedef void *SecTrustRef;

#define kCFStringEncodingASCII 0x0600u
#define kCFStringEncodingUTF8 0x08000100u
#define kCFNotFound (-1L)

enum {
    errSecSuccess = 0,
    errSecParam = -50,
    errSecAllocate = -108,
    errSecHostNameMismatch = -67602,
    errSecInvalidExtendedKeyUsage = -67609,
    errSecIncompleteCertRevocationCheck = -67635,
    errSecTrustSettingDeny = -67654,
    errSecCertificateExpired = -67818,
    errSecCertificateNotValidYet = -67819,
    errSecCertificateRevoked = -67820,
    errSecNotTrusted = -67843,
    errSecCertificateValidityPeriodTooLong = -67901,
};

enum {
    kSecTrustResultInvalid = 0,
    kSecTrustResultProceed = 1,
    kSecTrustResultDeny = 3,
    kSecTrustResultUnspecified = 4,
    kSecTrustResultRecoverableTrustFailure = 5,
    kSecTrustResultFatalTrustFailure = 6,
    kSecTrustResultOtherError = 7,
};

/* SecPolicyCreateRevocation flags (SecPolicy.h). */
#define kSecRevocationOCSPMethod (1UL << 0)
#define kSecRevocationCRLMethod (1UL << 1)
#define kSecRevocationPreferCRL (1UL << 2)
#define kSecRevocationRequirePositiveResponse (1UL << 3)
#define kSecRevocationNetworkAccessDisabled (1UL << 4)
#define REVOCATION_KNOWN_FLAGS 0x1fUL

/* ---- fatal misuse ------------------------------------------------------- */

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("macos-standin: FATAL: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

/* ---- the object model --------------------------------------------------- */

enum otype { T_ANY = 0, T_DATA, T_ARRAY, T_STRING, T_ERROR, T_CERT, T_POLICY, T_TRUST, T_COUNT };
static const char *const type_names[T_COUNT] = {
    "any", "CFData", "CFArray", "CFString", "CFError", "SecCertificate", "SecPolicy", "SecTrust",
};

#define MAGIC_LIVE 0x4346414cu /* "CFAL" */
#define MAGIC_DEAD 0xdeadcf00u

typedef struct obj {
    uint32_t magic;
    enum otype type;
    long refs;
} obj;

typedef struct {
    obj h;
    CFIndex len;
    UInt8 *bytes;
} data_t;

typedef struct {
    obj h;
    CFIndex count, cap;
    const void **values;
    bool retains; /* created with &kCFTypeArrayCallBacks */
    bool is_mutable;
} array_t;

typedef struct {
    obj h;
    char *bytes; /* UTF-8, not NUL terminated in general */
    size_t nbytes;
} string_t;

typedef struct {
    obj h;
    CFStringRef domain;
    CFIndex code;
    CFStringRef description;
} error_t_;

typedef struct {
    obj h;
    X509 *x509;
} cert_t;

enum pkind { P_BASIC = 1, P_SSL, P_REVOCATION };
typedef struct {
    obj h;
    enum pkind kind;
    bool server;
    CFStringRef host; /* retained; NULL means no name check */
    CFOptionFlags revocation_flags;
} policy_t;

typedef struct {
    obj h;
    CFArrayRef certs;    /* retained CFArray of SecCertificate, leaf first */
    CFArrayRef policies; /* retained CFArray of SecPolicy */
    CFArrayRef anchors;  /* retained CFArray of SecCertificate, or NULL */
    bool anchors_only;
    int network; /* SecTrustSetNetworkFetchAllowed: -1 never called, 0 off, 1 on */
    bool evaluated;
    SecTrustResultType last_result;
} trust_t;

/* Every object ever handed out stays registered: released objects keep their
 * (poisoned) header forever, so a stale pointer is always recognised as "use
 * after release" and never as some new object that reused the memory. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static obj **g_registry;
static size_t g_registry_cap, g_registry_used;
static long g_live[T_COUNT];
static long g_evaluations[2];

static size_t ptr_hash(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    return (size_t)v;
}

/* caller holds g_lock */
static void registry_insert(obj *o)
{
    if ((g_registry_used + 1) * 2 > g_registry_cap) {
        size_t ncap = g_registry_cap ? g_registry_cap * 2 : 1024;
        obj **n = calloc(ncap, sizeof *n);
        if (!n)
            die("out of memory");
        for (size_t i = 0; i < g_registry_cap; i++) {
            if (g_registry[i]) {
                size_t j = ptr_hash(g_registry[i]) & (ncap - 1);
                while (n[j])
                    j = (j + 1) & (ncap - 1);
                n[j] = g_registry[i];
            }
        }
        free(g_registry);
        g_registry = n;
        g_registry_cap = ncap;
    }
    size_t j = ptr_hash(o) & (g_registry_cap - 1);
    while (g_registry[j])
        j = (j + 1) & (g_registry_cap - 1);
    g_registry[j] = o;
    g_registry_used++;
}

/* caller holds g_lock */
static bool registry_contains(const void *p)
{
    if (!g_registry_cap)
        return false;
    size_t j = ptr_hash(p) & (g_registry_cap - 1);
    while (g_registry[j]) {
        if (g_registry[j] == p)
            return true;
        j = (j + 1) & (g_registry_cap - 1);
    }
    return false;
}

/* caller holds g_lock */
static obj *check_locked(const void *p, const char *fn, enum otype want)
{
    if (!p)
        die("%s: NULL passed where Apple requires a %s", fn, type_names[want == T_ANY ? 0 : want]);
    if (!registry_contains(p))
        die("%s: %p is not a CoreFoundation object (wrong pointer, or a pointer to a pointer?)", fn, p);
    obj *o = (obj *)p;
    if (o->magic == MAGIC_DEAD)
        die("%s: %s %p used after its last CFRelease", fn, type_names[o->type], p);
    if (o->magic != MAGIC_LIVE)
        die("%s: %p has a corrupted header", fn, p);
    if (want != T_ANY && o->type != want)
        die("%s: expected a %s, got a %s (%p)", fn, type_names[want], type_names[o->type], p);
    return o;
}

static obj *check(const void *p, const char *fn, enum otype want)
{
    pthread_mutex_lock(&g_lock);
    obj *o = check_locked(p, fn, want);
    pthread_mutex_unlock(&g_lock);
    return o;
}

/* The type of a live object, or T_ANY when p is not one (no abort). */
static enum otype type_of(const void *p)
{
    enum otype t = T_ANY;
    pthread_mutex_lock(&g_lock);
    if (p && registry_contains(p) && ((const obj *)p)->magic == MAGIC_LIVE)
        t = ((const obj *)p)->type;
    pthread_mutex_unlock(&g_lock);
    return t;
}

static void *new_object(size_t size, enum otype type)
{
    obj *o = calloc(1, size);
    if (!o)
        die("out of memory");
    o->magic = MAGIC_LIVE;
    o->type = type;
    o->refs = 1;
    pthread_mutex_lock(&g_lock);
    registry_insert(o);
    g_live[type]++;
    pthread_mutex_unlock(&g_lock);
    return o;
}

static void check_allocator(CFAllocatorRef allocator, const char *fn)
{
    /* kCFAllocatorDefault is NULL on Apple's side too.  Anything else here is
     * almost certainly the address of the kCFAllocatorDefault variable passed
     * instead of its value, a classic ctypes mistake. */
    if (allocator != NULL)
        die("%s: allocator %p is not kCFAllocatorDefault (NULL); did you pass the symbol's address?", fn,
            allocator);
}

static void destroy(obj *o);

EXPORT CFTypeRef CFRetain(CFTypeRef cf)
{
    pthread_mutex_lock(&g_lock);
    obj *o = check_locked(cf, "CFRetain", T_ANY);
    o->refs++;
    pthread_mutex_unlock(&g_lock);
    return cf;
}

EXPORT void CFRelease(CFTypeRef cf)
{
    pthread_mutex_lock(&g_lock);
    obj *o = check_locked(cf, "CFRelease", T_ANY);
    bool last = --o->refs == 0;
    if (last) {
        o->magic = MAGIC_DEAD;
        g_live[o->type]--;
    }
    pthread_mutex_unlock(&g_lock);
    if (last)
        destroy(o);
}

EXPORT CFIndex CFGetRetainCount(CFTypeRef cf)
{
    pthread_mutex_lock(&g_lock);
    obj *o = check_locked(cf, "CFGetRetainCount", T_ANY);
    CFIndex n = o->refs;
    pthread_mutex_unlock(&g_lock);
    return n;
}

EXPORT CFTypeID CFGetTypeID(CFTypeRef cf) { return (CFTypeID)check(cf, "CFGetTypeID", T_ANY)->type; }
EXPORT CFTypeID CFDataGetTypeID(void) { return T_DATA; }
EXPORT CFTypeID CFArrayGetTypeID(void) { return T_ARRAY; }
EXPORT CFTypeID CFStringGetTypeID(void) { return T_STRING; }
EXPORT CFTypeID CFErrorGetTypeID(void) { return T_ERROR; }
EXPORT CFTypeID SecCertificateGetTypeID(void) { return T_CERT; }
EXPORT CFTypeID SecPolicyGetTypeID(void) { return T_POLICY; }
EXPORT CFTypeID SecTrustGetTypeID(void) { return T_TRUST; }

/* Releases what an object owns; its header stays, poisoned (see registry). */
static void destroy(obj *o)
{
    switch (o->type) {
    case T_DATA: {
        data_t *d = (data_t *)o;
        free(d->bytes);
        d->bytes = NULL;
        break;
    }
    case T_ARRAY: {
        array_t *a = (array_t *)o;
        if (a->retains)
            for (CFIndex i = 0; i < a->count; i++)
                CFRelease(a->values[i]);
        free(a->values);
        a->values = NULL;
        a->count = 0;
        break;
    }
    case T_STRING: {
        string_t *s = (string_t *)o;
        free(s->bytes);
        s->bytes = NULL;
        break;
    }
    case T_ERROR: {
        error_t_ *e = (error_t_ *)o;
        CFRelease(e->domain);
        CFRelease(e->description);
        break;
    }
    case T_CERT: {
        cert_t *c = (cert_t *)o;
        X509_free(c->x509);
        c->x509 = NULL;
        break;
    }
    case T_POLICY: {
        policy_t *p = (policy_t *)o;
        if (p->host)
            CFRelease(p->host);
        break;
    }
    case T_TRUST: {
        trust_t *t = (trust_t *)o;
        CFRelease(t->certs);
        CFRelease(t->policies);
        if (t->anchors)
            CFRelease(t->anchors);
        break;
    }
    default:
        die("destroy: unknown type %d", (int)o->type);
    }
}

/* ---- CFData ----------------------------------------------------------------- */

EXPORT CFDataRef CFDataCreate(CFAllocatorRef allocator, const UInt8 *bytes, CFIndex length)
{
    check_allocator(allocator, "CFDataCreate");
    if (length < 0)
        die("CFDataCreate: negative length %ld", length);
    if (length > 0 && !bytes)
        die("CFDataCreate: NULL bytes with length %ld", length);
    data_t *d = new_object(sizeof *d, T_DATA);
    d->bytes = malloc(length ? (size_t)length : 1);
    if (!d->bytes)
        die("out of memory");
    if (length)
        memcpy(d->bytes, bytes, (size_t)length);
    d->len = length;
    return d;
}

EXPORT CFIndex CFDataGetLength(CFDataRef data) { return ((data_t *)check(data, "CFDataGetLength", T_DATA))->len; }

EXPORT const UInt8 *CFDataGetBytePtr(CFDataRef data)
{
    return ((data_t *)check(data, "CFDataGetBytePtr", T_DATA))->bytes;
}

/* ---- CFArray ---------------------------------------------------------------- */

typedef const void *(*CFArrayRetainCallBack)(CFAllocatorRef allocator, const void *value);
typedef void (*CFArrayReleaseCallBack)(CFAllocatorRef allocator, const void *value);
typedef CFStringRef (*CFArrayCopyDescriptionCallBack)(const void *value);
typedef Boolean (*CFArrayEqualCallBack)(const void *value1, const void *value2);
typedef struct {
    CFIndex version;
    CFArrayRetainCallBack retain;
    CFArrayReleaseCallBack release;
    CFArrayCopyDescriptionCallBack copyDescription;
    CFArrayEqualCallBack equal;
} CFArrayCallBacks;

static const void *array_cb_retain(CFAllocatorRef allocator, const void *value)
{
    (void)allocator;
    return CFRetain(value);
}

static void array_cb_release(CFAllocatorRef allocator, const void *value)
{
    (void)allocator;
    CFRelease(value);
}

EXPORT const CFArrayCallBacks kCFTypeArrayCallBacks = {0, array_cb_retain, array_cb_release, NULL, NULL};
EXPORT const CFAllocatorRef kCFAllocatorDefault = NULL;

static bool array_callbacks(const CFArrayCallBacks *callBacks, const char *fn)
{
    if (callBacks == &kCFTypeArrayCallBacks)
        return true;
    if (callBacks == NULL)
        return false;
    die("%s: callbacks %p are neither &kCFTypeArrayCallBacks nor NULL (passed the struct's contents "
        "instead of its address?)",
        fn, (const void *)callBacks);
}

static void array_push(array_t *a, const void *value, const char *fn)
{
    if (a->retains)
        check(value, fn, T_ANY);
    if (a->count == a->cap) {
        CFIndex ncap = a->cap ? a->cap * 2 : 4;
        const void **n = realloc(a->values, (size_t)ncap * sizeof *n);
        if (!n)
            die("out of memory");
        a->values = n;
        a->cap = ncap;
    }
    a->values[a->count++] = a->retains ? CFRetain(value) : value;
}

EXPORT CFArrayRef CFArrayCreate(CFAllocatorRef allocator, const void **values, CFIndex numValues,
                                const CFArrayCallBacks *callBacks)
{
    check_allocator(allocator, "CFArrayCreate");
    if (numValues < 0)
        die("CFArrayCreate: negative count %ld", numValues);
    if (numValues > 0 && !values)
        die("CFArrayCreate: NULL values with count %ld", numValues);
    array_t *a = new_object(sizeof *a, T_ARRAY);
    a->retains = array_callbacks(callBacks, "CFArrayCreate");
    for (CFIndex i = 0; i < numValues; i++)
        array_push(a, values[i], "CFArrayCreate");
    return a;
}

EXPORT CFMutableArrayRef CFArrayCreateMutable(CFAllocatorRef allocator, CFIndex capacity,
                                              const CFArrayCallBacks *callBacks)
{
    check_allocator(allocator, "CFArrayCreateMutable");
    if (capacity < 0)
        die("CFArrayCreateMutable: negative capacity %ld", capacity);
    array_t *a = new_object(sizeof *a, T_ARRAY);
    a->retains = array_callbacks(callBacks, "CFArrayCreateMutable");
    a->is_mutable = true;
    return a;
}

EXPORT void CFArrayAppendValue(CFMutableArrayRef theArray, const void *value)
{
    array_t *a = (array_t *)check(theArray, "CFArrayAppendValue", T_ARRAY);
    if (!a->is_mutable)
        die("CFArrayAppendValue: %p is an immutable CFArray", theArray);
    array_push(a, value, "CFArrayAppendValue");
}

EXPORT CFIndex CFArrayGetCount(CFArrayRef theArray)
{
    return ((array_t *)check(theArray, "CFArrayGetCount", T_ARRAY))->count;
}

EXPORT const void *CFArrayGetValueAtIndex(CFArrayRef theArray, CFIndex idx)
{
    array_t *a = (array_t *)check(theArray, "CFArrayGetValueAtIndex", T_ARRAY);
    if (idx < 0 || idx >= a->count)
        die("CFArrayGetValueAtIndex: index %ld out of bounds (count %ld)", idx, a->count);
    return a->values[idx];
}

/* ---- CFString --------------------------------------------------------------- */

static bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + extra >= n)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

static bool encoding_accepts(CFStringEncoding encoding, const char *bytes, size_t n, const char *fn)
{
    if (encoding == kCFStringEncodingASCII) {
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)bytes[i] >= 0x80)
                return false;
        return true;
    }
    if (encoding == kCFStringEncodingUTF8)
        return valid_utf8((const unsigned char *)bytes, n);
    die("%s: encoding 0x%x is not supported by the stand-in (use kCFStringEncodingUTF8)", fn, encoding);
}

static CFStringRef make_string(const char *bytes, size_t n)
{
    string_t *s = new_object(sizeof *s, T_STRING);
    s->bytes = malloc(n ? n : 1);
    if (!s->bytes)
        die("out of memory");
    memcpy(s->bytes, bytes, n);
    s->nbytes = n;
    return s;
}

EXPORT CFStringRef CFStringCreateWithCString(CFAllocatorRef alloc, const char *cStr, CFStringEncoding encoding)
{
    check_allocator(alloc, "CFStringCreateWithCString");
    if (!cStr)
        die("CFStringCreateWithCString: NULL cStr");
    size_t n = strlen(cStr);
    if (!encoding_accepts(encoding, cStr, n, "CFStringCreateWithCString"))
        return NULL; /* Apple: NULL when the bytes are not valid in the encoding */
    return make_string(cStr, n);
}

EXPORT CFStringRef CFStringCreateWithBytes(CFAllocatorRef alloc, const UInt8 *bytes, CFIndex numBytes,
                                           CFStringEncoding encoding, Boolean isExternalRepresentation)
{
    check_allocator(alloc, "CFStringCreateWithBytes");
    if (numBytes < 0)
        die("CFStringCreateWithBytes: negative length %ld", numBytes);
    if (numBytes > 0 && !bytes)
        die("CFStringCreateWithBytes: NULL bytes with length %ld", numBytes);
    if (isExternalRepresentation)
        die("CFStringCreateWithBytes: isExternalRepresentation is not supported by the stand-in");
    if (!encoding_accepts(encoding, (const char *)bytes, (size_t)numBytes, "CFStringCreateWithBytes"))
        return NULL;
    return make_string((const char *)bytes, (size_t)numBytes);
}

/* Length in UTF-16 code units, like Apple's. */
EXPORT CFIndex CFStringGetLength(CFStringRef theString)
{
    string_t *s = (string_t *)check(theString, "CFStringGetLength", T_STRING);
    CFIndex units = 0;
    for (size_t i = 0; i < s->nbytes; i++) {
        unsigned char c = (unsigned char)s->bytes[i];
        if ((c & 0xc0) == 0x80)
            continue;
        units += (c >= 0xf0) ? 2 : 1;
    }
    return units;
}

EXPORT CFIndex CFStringGetMaximumSizeForEncoding(CFIndex length, CFStringEncoding encoding)
{
    if (length < 0)
        return kCFNotFound;
    if (encoding == kCFStringEncodingUTF8)
        return length > (CFIndex)(LONG_MAX / 3) ? kCFNotFound : length * 3;
    if (encoding == kCFStringEncodingASCII)
        return length;
    die("CFStringGetMaximumSizeForEncoding: encoding 0x%x is not supported by the stand-in", encoding);
}

EXPORT Boolean CFStringGetCString(CFStringRef theString, char *buffer, CFIndex bufferSize,
                                  CFStringEncoding encoding)
{
    string_t *s = (string_t *)check(theString, "CFStringGetCString", T_STRING);
    if (!buffer || bufferSize <= 0)
        return 0;
    if (!encoding_accepts(encoding, s->bytes, s->nbytes, "CFStringGetCString"))
        return 0;
    if ((size_t)bufferSize < s->nbytes + 1)
        return 0; /* Apple: false when the buffer is too small, nothing useful written */
    memcpy(buffer, s->bytes, s->nbytes);
    buffer[s->nbytes] = '\0';
    return 1;
}

/* ---- CFError ---------------------------------------------------------------- */

__attribute__((unused)) static CFErrorRef make_os_status_error(OSStatus status, const char *description)
{
    error_t_ *e = new_object(sizeof *e, T_ERROR);
    static const char domain[] = "NSOSStatusErrorDomain";
    e->domain = make_string(domain, sizeof domain - 1);
    e->code = status;
    e->description = make_string(description, strlen(description));
    return e;
}

EXPORT CFIndex CFErrorGetCode(CFErrorRef err) { return ((error_t_ *)check(err, "CFErrorGetCode", T_ERROR))->code; }

EXPORT CFStringRef CFErrorGetDomain(CFErrorRef err)
{
    return ((error_t_ *)check(err, "CFErrorGetDomain", T_ERROR))->domain;
}

EXPORT CFStringRef CFErrorCopyDescription(CFErrorRef err)
{
    error_t_ *e = (error_t_ *)check(err, "CFErrorCopyDescription", T_ERROR);
    return CFRetain(e->description);
}

/* ---- SecCertificate --------------------------------------------------------- */

EXPORT SecCertificateRef SecCertificateCreateWithData(CFAllocatorRef allocator, CFDataRef data)
{
    check_allocator(allocator, "SecCertificateCreateWithData");
    data_t *d = (data_t *)check(data, "SecCertificateCreateWithData", T_DATA);
    const unsigned char *p = d->bytes;
    X509 *x = d2i_X509(NULL, &p, d->len);
    if (!x || p != d->bytes + d->len) {
        /* Apple: NULL when the data is not one valid DER-encoded X.509 certificate. */
        X509_free(x);
        ERR_clear_error();
        return NULL;
    }
    cert_t *c = new_object(sizeof *c, T_CERT);
    c->x509 = x;
    return c;
}

EXPORT CFDataRef SecCertificateCopyData(SecCertificateRef certificate)
{
    cert_t *c = (cert_t *)check(certificate, "SecCertificateCopyData", T_CERT);
    unsigned char *der = NULL;
    int n = i2d_X509(c->x509, &der);
    if (n < 0)
        die("SecCertificateCopyData: cannot encode certificate");
    CFDataRef out = CFDataCreate(NULL, der, n);
    OPENSSL_free(der);
    return out;
}

/* Like SecCertificateCopySubjectSummary: the name macOS shows for a
 * certificate (common name, else the first DNS or IP subjectAltName, else the
 * organisational unit). */
static void subject_summary(X509 *x, char *out, size_t size)
{
    X509_NAME *name = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0) {
        GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
            if (gn->type == GEN_DNS) {
                snprintf(out, size, "%.*s", ASN1_STRING_length(gn->d.dNSName),
                         (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
                GENERAL_NAMES_free(sans);
                return;
            }
            if (gn->type == GEN_IPADD) {
                int len = ASN1_STRING_length(gn->d.iPAddress);
                const unsigned char *ip = ASN1_STRING_get0_data(gn->d.iPAddress);
                if ((len == 4 && inet_ntop(AF_INET, ip, out, (socklen_t)size)) ||
                    (len == 16 && inet_ntop(AF_INET6, ip, out, (socklen_t)size))) {
                    GENERAL_NAMES_free(sans);
                    return;
                }
            }
        }
        GENERAL_NAMES_free(sans);
        idx = X509_NAME_get_index_by_NID(name, NID_organizationalUnitName, -1);
    }
    if (idx >= 0) {
        ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, v);
        if (n >= 0) {
            snprintf(out, size, "%.*s", n, (const char *)utf8);
            OPENSSL_free(utf8);
            return;
        }
    }
    snprintf(out, size, "certificate");
}

/* ---- SecPolicy -------------------------------------------------------------- */

EXPORT SecPolicyRef SecPolicyCreateBasicX509(void)
{
    policy_t *p = new_object(sizeof *p, T_POLICY);
    p->kind = P_BASIC;
    return p;
}

EXPORT SecPolicyRef SecPolicyCreateSSL(Boolean server, CFStringRef hostname)
{
    if (hostname)
        check(hostname, "SecPolicyCreateSSL", T_STRING);
    policy_t *p = new_object(sizeof *p, T_POLICY);
    p->kind = P_SSL;
    p->server = server != 0;
    p->host = hostname ? CFRetain(hostname) : NULL;
    return p;
}

EXPORT SecPolicyRef SecPolicyCreateRevocation(CFOptionFlags revocationFlags)
{
    if (revocationFlags & ~REVOCATION_KNOWN_FLAGS)
        return NULL;
    policy_t *p = new_object(sizeof *p, T_POLICY);
    p->kind = P_REVOCATION;
    p->revocation_flags = revocationFlags;
    return p;
}

/* ---- the "keychain": system anchors, trust settings and revocation data ----- */

enum setting { SETTING_SYSTEM_ROOT = 0, SETTING_ALWAYS_TRUST = 1, SETTING_DENY = 2 };
typedef struct {
    X509 *x509;
    enum setting setting;
} keychain_entry;

static pthread_mutex_t g_keychain_lock = PTHREAD_MUTEX_INITIALIZER;
static keychain_entry *g_keychain;
static size_t g_keychain_count;
static X509_CRL **g_crls;
static size_t g_crl_count;

/* The "network" (also under g_keychain_lock): what an HTTP GET of each URL
 * returns, for AIA caIssuers fetching, and how many fetches were attempted. */
typedef struct {
    char *url;
    size_t url_len;
    unsigned char *body;
    long body_len;
} network_entry;
static network_entry *g_network;
static size_t g_network_count;
static long g_fetch_attempts;
/* What SecTrustSetNetworkFetchAllowed returns (fault injection, tests only). */
static OSStatus g_fetch_control_status = errSecSuccess;

/* ---- SecTrust --------------------------------------------------------------- */

/* A retained CFArray of objects of one type from a single object or an array;
 * NULL when the input is of the wrong kind (the caller returns errSecParam). */
static CFArrayRef array_of(CFTypeRef in, enum otype want, const char *fn)
{
    enum otype t = check(in, fn, T_ANY)->type;
    if (t == want)
        return CFArrayCreate(NULL, &in, 1, &kCFTypeArrayCallBacks);
    if (t != T_ARRAY)
        return NULL;
    array_t *a = (array_t *)in;
    if (a->count == 0)
        return NULL;
    for (CFIndex i = 0; i < a->count; i++)
        if (type_of(a->values[i]) != want)
            return NULL;
    return CFArrayCreate(NULL, a->values, a->count, &kCFTypeArrayCallBacks);
}

EXPORT OSStatus SecTrustCreateWithCertificates(CFTypeRef certificates, CFTypeRef policies, SecTrustRef *trust)
{
    if (!trust)
        die("SecTrustCreateWithCertificates: NULL trust out-pointer");
    CFArrayRef certs = array_of(certificates, T_CERT, "SecTrustCreateWithCertificates");
    if (!certs)
        return errSecParam;
    CFArrayRef pols;
    if (policies) {
        pols = array_of(policies, T_POLICY, "SecTrustCreateWithCertificates");
        if (!pols) {
            CFRelease(certs);
            return errSecParam;
        }
    } else {
        /* Apple: NULL policies means the basic X.509 policy. */
        SecPolicyRef basic = SecPolicyCreateBasicX509();
        pols = CFArrayCreate(NULL, (const void **)&basic, 1, &kCFTypeArrayCallBacks);
        CFRelease(basic);
    }
    trust_t *t = new_object(sizeof *t, T_TRUST);
    t->certs = certs;
    t->policies = pols;
    t->network = -1;
    *trust = t;
    return errSecSuccess;
}

EXPORT OSStatus SecTrustSetAnchorCertificates(SecTrustRef trust, CFArrayRef anchorCertificates)
{
    trust_t *t = (trust_t *)check(trust, "SecTrustSetAnchorCertificates", T_TRUST);
    CFArrayRef copy = NULL;
    if (anchorCertificates) {
        check(anchorCertificates, "SecTrustSetAnchorCertificates", T_ARRAY);
        array_t *a = (array_t *)anchorCertificates;
        for (CFIndex i = 0; i < a->count; i++)
            if (type_of(a->values[i]) != T_CERT)
                return errSecParam;
        copy = CFArrayCreate(NULL, a->values, a->count, &kCFTypeArrayCallBacks);
    }
    if (t->anchors)
        CFRelease(t->anchors);
    t->anchors = copy;
    /* Apple: setting anchors makes them the only ones trusted until
     * SecTrustSetAnchorCertificatesOnly(trust, false) is called *after* this;
     * NULL restores the system anchors. */
    t->anchors_only = copy != NULL;
    t->evaluated = false;
    return errSecSuccess;
}

EXPORT OSStatus SecTrustSetAnchorCertificatesOnly(SecTrustRef trust, Boolean anchorCertificatesOnly)
{
    trust_t *t = (trust_t *)check(trust, "SecTrustSetAnchorCertificatesOnly", T_TRUST);
    t->anchors_only = anchorCertificatesOnly != 0;
    t->evaluated = false;
    return errSecSuccess;
}

/* Apple (SecTrust.h): "By default, network fetch of missing certificates is
 * enabled if the trust evaluation includes the SSL policy, otherwise it is
 * disabled." */
static bool fetch_allowed(const trust_t *t)
{
    if (t->network >= 0)
        return t->network == 1;
    const array_t *pols = (const array_t *)t->policies;
    for (CFIndex i = 0; i < pols->count; i++)
        if (((const policy_t *)pols->values[i])->kind == P_SSL)
            return true;
    return false;
}

#ifndef STANDIN_NO_NETWORK_FETCH_CONTROL
/* macOS 10.9+.  "Specifies whether a trust evaluation is permitted to fetch
 * missing intermediate certificates from the network." */
EXPORT OSStatus SecTrustSetNetworkFetchAllowed(SecTrustRef trust, Boolean allowFetch)
{
    trust_t *t = (trust_t *)check(trust, "SecTrustSetNetworkFetchAllowed", T_TRUST);
    pthread_mutex_lock(&g_keychain_lock);
    OSStatus status = g_fetch_control_status;
    pthread_mutex_unlock(&g_keychain_lock);
    if (status != errSecSuccess)
        return status;
    t->network = allowFetch ? 1 : 0;
    t->evaluated = false;
    return errSecSuccess;
}

EXPORT OSStatus SecTrustGetNetworkFetchAllowed(SecTrustRef trust, Boolean *allowFetch)
{
    trust_t *t = (trust_t *)check(trust, "SecTrustGetNetworkFetchAllowed", T_TRUST);
    if (!allowFetch)
        return errSecParam;
    *allowFetch = fetch_allowed(t) ? 1 : 0;
    return errSecSuccess;
}
#endif

/* ---- AIA: fetching missing issuers from the "network" ------------------------ */

#define MAX_FETCH_DEPTH 8

static X509 *issuer_in(X509 *x, STACK_OF(X509) *pool)
{
    for (int i = 0; i < sk_X509_num(pool); i++)
        if (X509_check_issued(sk_X509_value(pool, i), x) == X509_V_OK)
            return sk_X509_value(pool, i);
    return NULL;
}

/* caller holds g_keychain_lock.  The issuer downloaded from x's AIA caIssuers
 * URL(s) (a new reference), or NULL when there is none or it is not a DER
 * certificate. */
static X509 *fetch_ca_issuer(X509 *x)
{
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
    X509 *got = NULL;
    for (int i = 0; aia && !got && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
        const ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        if (OBJ_obj2nid(ad->method) != NID_ad_ca_issuers || ad->location->type != GEN_URI)
            continue;
        const ASN1_IA5STRING *uri = ad->location->d.uniformResourceIdentifier;
        size_t n = (size_t)ASN1_STRING_length(uri);
        g_fetch_attempts++;
        for (size_t k = 0; k < g_network_count; k++) {
            const network_entry *e = &g_network[k];
            if (e->url_len == n && memcmp(e->url, ASN1_STRING_get0_data(uri), n) == 0) {
                const unsigned char *p = e->body;
                got = d2i_X509(NULL, &p, e->body_len);
                if (got && p != e->body + e->body_len) {
                    X509_free(got);
                    got = NULL;
                }
                break;
            }
        }
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    ERR_clear_error();
    return got;
}

/* caller holds g_keychain_lock.  Walks up from the leaf like trustd's path
 * builder: a certificate whose issuer is neither among the certificates the
 * caller passed nor among the anchors / keychain gets its issuer fetched from
 * its AIA caIssuers URL, which is then added to `untrusted` (and to
 * `fetched`, which owns it). */
static void fetch_missing_issuers(X509 *leaf, STACK_OF(X509) *untrusted, STACK_OF(X509) *local,
                                  STACK_OF(X509) *fetched)
{
    X509 *cur = leaf;
    for (int depth = 0; depth < MAX_FETCH_DEPTH; depth++) {
        if (X509_check_issued(cur, cur) == X509_V_OK || issuer_in(cur, local))
            return; /* self-issued, or issued by an anchor / keychain certificate */
        X509 *next = issuer_in(cur, untrusted);
        if (!next) {
            next = fetch_ca_issuer(cur);
            if (!next)
                return;
            sk_X509_push(fetched, next);
            sk_X509_push(untrusted, next);
        }
        cur = next;
    }
}

/* How bad a problem is, to pick the one reported when there are several. */
static int severity(OSStatus status)
{
    switch (status) {
    case errSecTrustSettingDeny:
        return 9;
    case errSecNotTrusted:
        return 8;
    case errSecCertificateRevoked:
        return 7;
    case errSecCertificateExpired:
    case errSecCertificateNotValidYet:
        return 6;
    case errSecInvalidExtendedKeyUsage:
    case errSecCertificateValidityPeriodTooLong:
        return 5;
    case errSecHostNameMismatch:
        return 4;
    case errSecIncompleteCertRevocationCheck:
        return 3;
    default:
        return 1;
    }
}

typedef struct {
    OSStatus status;
    X509 *culprit; /* borrowed; the certificate the description names */
    bool revocation;
    bool require_positive;
    bool network; /* AIA and revocation answers may be fetched */
} evaluation;

static void note(evaluation *ev, OSStatus status, X509 *culprit)
{
    if (status == errSecSuccess)
        return;
    if (ev->status == errSecSuccess || severity(status) > severity(ev->status)) {
        ev->status = status;
        ev->culprit = culprit;
    }
}

static int verify_callback(int ok, X509_STORE_CTX *ctx)
{
    if (ok)
        return 1;
    evaluation *ev = X509_STORE_CTX_get_app_data(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    int last = chain ? sk_X509_num(chain) - 1 : 0;
    OSStatus status;
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        status = errSecCertificateExpired;
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        status = errSecCertificateNotValidYet;
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        status = errSecHostNameMismatch;
        break;
    case X509_V_ERR_INVALID_PURPOSE:
        status = errSecInvalidExtendedKeyUsage;
        break;
    case X509_V_ERR_CERT_REVOKED:
        status = errSecCertificateRevoked;
        break;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
        /* No usable revocation answer.  The anchor itself is never checked;
         * for the others it only matters when a positive answer is required
         * (kSecRevocationRequirePositiveResponse), like Apple's best-effort
         * checking otherwise. */
        status = (depth < last && ev->require_positive) ? errSecIncompleteCertRevocationCheck : errSecSuccess;
        break;
    default:
        /* no issuer, untrusted root, bad signature, not a CA, path length... */
        status = errSecNotTrusted;
        break;
    }
    note(ev, status, cert);
    return 1; /* keep going, so every problem is seen and the worst reported */
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Apple's TLS server certificate rules (support.apple.com HT210176,
 * HT211025): certificates issued on/after 2019-07-01 need a serverAuth EKU
 * and at most 825 days of validity; those issued on/after 2020-09-01 that
 * chain to a preinstalled (system) root at most 398 days. */
static void apple_tls_server_rules(evaluation *ev, X509 *leaf, bool system_anchored)
{
    const ASN1_TIME *nb = X509_get0_notBefore(leaf), *na = X509_get0_notAfter(leaf);
    if (ASN1_TIME_cmp_time_t(nb, 1561939200) < 0) /* before 2019-07-01 */
        return;
    if (!(X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE))
        note(ev, errSecInvalidExtendedKeyUsage, leaf);
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, nb, na))
        return;
    long limit = (system_anchored && ASN1_TIME_cmp_time_t(nb, 1598918400) >= 0) ? 398 : 825;
    if (days > limit || (days == limit && secs > 0))
        note(ev, errSecCertificateValidityPeriodTooLong, leaf);
}

__attribute__((unused)) static const char *describe(OSStatus status)
{
    switch (status) {
    case errSecNotTrusted:
        return "certificate is not trusted";
    case errSecCertificateExpired:
        return "certificate is expired";
    case errSecCertificateNotValidYet:
        return "certificate is not yet valid";
    case errSecHostNameMismatch:
        return "certificate name does not match input";
    case errSecInvalidExtendedKeyUsage:
        return "certificate is not permitted for this usage";
    case errSecCertificateRevoked:
        return "certificate is revoked";
    case errSecIncompleteCertRevocationCheck:
        return "certificate revocation status could not be determined";
    case errSecTrustSettingDeny:
        return "certificate is marked as not trusted";
    case errSecCertificateValidityPeriodTooLong:
        return "certificate is not standards compliant";
    default:
        return "certificate could not be verified";
    }
}

static SecTrustResultType result_for(OSStatus status)
{
    switch (status) {
    case errSecSuccess:
        return kSecTrustResultUnspecified;
    case errSecTrustSettingDeny:
        return kSecTrustResultDeny;
    case errSecCertificateRevoked:
    case errSecInvalidExtendedKeyUsage:
    case errSecCertificateValidityPeriodTooLong:
        return kSecTrustResultFatalTrustFailure;
    default:
        return kSecTrustResultRecoverableTrustFailure;
    }
}

static bool same_cert(X509 *a, X509 *b) { return X509_cmp(a, b) == 0; }

/* Runs one evaluation; *culprit_name gets the name for the description. */
static OSStatus evaluate(trust_t *t, SecTrustResultType *result, char *culprit_name, size_t name_size)
{
    evaluation ev = {errSecSuccess, NULL, false, false, fetch_allowed(t)};
    const policy_t *ssl = NULL;
    array_t *pols = (array_t *)t->policies;
    for (CFIndex i = 0; i < pols->count; i++) {
        const policy_t *p = pols->values[i];
        if (p->kind == P_SSL && !ssl)
            ssl = p;
        if (p->kind == P_REVOCATION && (p->revocation_flags & (kSecRevocationOCSPMethod | kSecRevocationCRLMethod))) {
            ev.revocation = true;
            ev.require_positive |= (p->revocation_flags & kSecRevocationRequirePositiveResponse) != 0;
        }
        /* SecPolicy.h: this flag "disallows network access for both
         * revocation checking and intermediate CA issuer fetching". */
        if (p->kind == P_REVOCATION && (p->revocation_flags & kSecRevocationNetworkAccessDisabled))
            ev.network = false;
    }

    array_t *certs = (array_t *)t->certs;
    X509 *leaf = ((const cert_t *)certs->values[0])->x509;
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    STACK_OF(X509) *custom = sk_X509_new_null();
    STACK_OF(X509) *denied = sk_X509_new_null();
    STACK_OF(X509) *system = sk_X509_new_null();
    STACK_OF(X509) *local = sk_X509_new_null();
    STACK_OF(X509) *fetched = sk_X509_new_null();
    bool always_trusted_anchor = false;
    if (!store || !untrusted || !custom || !denied || !system || !local || !fetched)
        die("out of memory");
    for (CFIndex i = 1; i < certs->count; i++)
        sk_X509_push(untrusted, ((const cert_t *)certs->values[i])->x509);
    if (t->anchors) {
        array_t *a = (array_t *)t->anchors;
        for (CFIndex i = 0; i < a->count; i++) {
            X509 *x = ((const cert_t *)a->values[i])->x509;
            X509_STORE_add_cert(store, x);
            sk_X509_push(custom, x);
        }
    }
    pthread_mutex_lock(&g_keychain_lock);
    for (size_t i = 0; i < g_keychain_count; i++) {
        X509 *x = g_keychain[i].x509;
        if (g_keychain[i].setting == SETTING_DENY) {
            /* a Deny trust setting applies whatever the anchors are */
            X509_up_ref(x);
            sk_X509_push(denied, x);
        } else if (!t->anchors_only) {
            X509_STORE_add_cert(store, x);
            X509_up_ref(x);
            sk_X509_push(system, x);
        }
    }
    if (ev.network) {
        for (int i = 0; i < sk_X509_num(custom); i++)
            sk_X509_push(local, sk_X509_value(custom, i));
        for (int i = 0; i < sk_X509_num(system); i++)
            sk_X509_push(local, sk_X509_value(system, i));
        for (int i = 0; i < sk_X509_num(denied); i++)
            sk_X509_push(local, sk_X509_value(denied, i));
        fetch_missing_issuers(leaf, untrusted, local, fetched);
    }
    /* Revocation answers come from the network too: without it there are none
     * (Apple would consult its cache of earlier answers; not modelled). */
    if (ev.revocation && ev.network)
        for (size_t i = 0; i < g_crl_count; i++)
            X509_STORE_add_crl(store, g_crls[i]);
    pthread_mutex_unlock(&g_keychain_lock);
    ERR_clear_error();

    unsigned long flags = X509_V_FLAG_PARTIAL_CHAIN; /* any anchor counts, not only self-signed roots */
    if (ev.revocation)
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    X509_STORE_set_flags(store, flags);

    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx || !X509_STORE_CTX_init(ctx, store, leaf, untrusted))
        die("X509_STORE_CTX_init failed");
    X509_STORE_CTX_set_verify_cb(ctx, verify_callback);
    X509_STORE_CTX_set_app_data(ctx, &ev);
    if (ssl) {
        X509_STORE_CTX_set_purpose(ctx, ssl->server ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT);
        if (ssl->host) {
            const string_t *h = ssl->host;
            X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
            /* Names are matched against subjectAltName only (macOS 10.15+
             * ignores the common name), no partial wildcards. */
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                       X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
            char *host = strndup(h->bytes, h->nbytes);
            if (!host)
                die("out of memory");
            int set_ok;
            if (strlen(host) != h->nbytes)
                set_ok = 0; /* embedded NUL: never matches anything */
            else if (is_ip_literal(host))
                set_ok = X509_VERIFY_PARAM_set1_ip_asc(param, host);
            else
                set_ok = X509_VERIFY_PARAM_set1_host(param, host, h->nbytes);
            free(host);
            if (!set_ok)
                note(&ev, errSecHostNameMismatch, leaf);
        }
    }

    int rc = X509_verify_cert(ctx);
    if (rc <= 0 && ev.status == errSecSuccess)
        note(&ev, errSecNotTrusted, leaf);

    STACK_OF(X509) *chain = X509_STORE_CTX_get1_chain(ctx);
    X509 *anchor = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, sk_X509_num(chain) - 1) : NULL;
    if (chain) {
        for (int i = 0; i < sk_X509_num(chain); i++)
            for (int k = 0; k < sk_X509_num(denied); k++)
                if (same_cert(sk_X509_value(chain, i), sk_X509_value(denied, k)))
                    note(&ev, errSecTrustSettingDeny, sk_X509_value(chain, i));
    }
    if (ssl && ssl->server && rc > 0 && anchor) {
        bool system_anchored = false;
        for (int k = 0; k < sk_X509_num(system); k++)
            if (same_cert(anchor, sk_X509_value(system, k)))
                system_anchored = true;
        for (int k = 0; k < sk_X509_num(custom); k++)
            if (same_cert(anchor, sk_X509_value(custom, k)))
                system_anchored = false;
        apple_tls_server_rules(&ev, leaf, system_anchored);
    }
    if (ev.status == errSecSuccess && anchor && !t->anchors_only) {
        pthread_mutex_lock(&g_keychain_lock);
        for (size_t i = 0; i < g_keychain_count; i++)
            if (g_keychain[i].setting == SETTING_ALWAYS_TRUST && same_cert(anchor, g_keychain[i].x509))
                always_trusted_anchor = true;
        pthread_mutex_unlock(&g_keychain_lock);
    }

    if (ev.status != errSecSuccess)
        subject_summary(ev.culprit ? ev.culprit : leaf, culprit_name, name_size);
    *result = ev.status == errSecSuccess && always_trusted_anchor ? kSecTrustResultProceed : result_for(ev.status);

    OSStatus status = ev.status;
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(untrusted);
    sk_X509_free(custom);
    sk_X509_pop_free(denied, X509_free);
    sk_X509_pop_free(system, X509_free);
    sk_X509_free(local);
    sk_X509_pop_free(fetched, X509_free);
    ERR_clear_error();
    return status;
}

#ifndef STANDIN_NO_EVALUATE_WITH_ERROR
EXPORT bool SecTrustEvaluateWithError(SecTrustRef trust, CFErrorRef *error)
{
    trust_t *t = (trust_t *)check(trust, "SecTrustEvaluateWithError", T_TRUST);
    pthread_mutex_lock(&g_lock);
    g_evaluations[0]++;
    pthread_mutex_unlock(&g_lock);
    SecTrustResultType result;
    char name[256] = "";
    OSStatus status = evaluate(t, &result, name, sizeof name);
    t->evaluated = true;
    t->last_result = result;
    if (status == errSecSuccess) {
        if (error)
            *error = NULL;
        return true;
    }
    if (error) {
        char text[512];
        snprintf(text, sizeof text, "\xe2\x80\x9c%s\xe2\x80\x9d %s", name, describe(status));
        *error = make_os_status_error(status, text);
    }
    return false;
}
#endif

EXPORT OSStatus SecTrustEvaluate(SecTrustRef trust, SecTrustResultType *result)
{
    trust_t *t = (trust_t *)check(trust, "SecTrustEvaluate", T_TRUST);
    if (!result)
        return errSecParam;
    pthread_mutex_lock(&g_lock);
    g_evaluations[1]++;
    pthread_mutex_unlock(&g_lock);
    char name[256] = "";
    evaluate(t, result, name, sizeof name);
    t->evaluated = true;
    t->last_result = *result;
    return errSecSuccess;
}

EXPORT OSStatus SecTrustGetTrustResult(SecTrustRef trust, SecTrustResultType *result)
{
    trust_t *t = (trust_t *)check(trust, "SecTrustGetTrustResult", T_TRUST);
    if (!result)
        return errSecParam;
    *result = t->evaluated ? t->last_result : kSecTrustResultInvalid;
    return errSecSuccess;
}

/* ---- test controls (not part of Apple's API) -------------------------------- */

/* Number of CF objects created and not yet released. */
EXPORT long standin_live_objects(void)
{
    long n = 0;
    pthread_mutex_lock(&g_lock);
    for (int i = 1; i < T_COUNT; i++)
        n += g_live[i];
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* "CFData=1 SecTrust=2" for the live objects, into buf. */
EXPORT void standin_live_report(char *buf, long size)
{
    if (!buf || size <= 0)
        return;
    buf[0] = '\0';
    size_t used = 0;
    pthread_mutex_lock(&g_lock);
    for (int i = 1; i < T_COUNT; i++) {
        if (g_live[i] && used < (size_t)size) {
            int n = snprintf(buf + used, (size_t)size - used, "%s%s=%ld", used ? " " : "", type_names[i], g_live[i]);
            if (n > 0)
                used += (size_t)n;
        }
    }
    pthread_mutex_unlock(&g_lock);
}

/* Calls of SecTrustEvaluateWithError (legacy=0) or SecTrustEvaluate (legacy=1). */
EXPORT long standin_evaluations(int legacy)
{
    pthread_mutex_lock(&g_lock);
    long n = g_evaluations[legacy ? 1 : 0];
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* Add a certificate to the stand-in's keychain.  setting 0: a preinstalled
 * system root; 1: a certificate the user marked "Always Trust"; 2: a
 * certificate marked "Never Trust" (a Deny trust setting).  Returns 0, or -1
 * when der is not a certificate. */
EXPORT int standin_keychain_add(const unsigned char *der, long len, int setting)
{
    if (setting < SETTING_SYSTEM_ROOT || setting > SETTING_DENY)
        return -1;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, len);
    if (!x || p != der + len) {
        X509_free(x);
        ERR_clear_error();
        return -1;
    }
    pthread_mutex_lock(&g_keychain_lock);
    keychain_entry *n = realloc(g_keychain, (g_keychain_count + 1) * sizeof *n);
    if (!n)
        die("out of memory");
    g_keychain = n;
    g_keychain[g_keychain_count].x509 = x;
    g_keychain[g_keychain_count].setting = (enum setting)setting;
    g_keychain_count++;
    pthread_mutex_unlock(&g_keychain_lock);
    return 0;
}

EXPORT void standin_keychain_clear(void)
{
    pthread_mutex_lock(&g_keychain_lock);
    for (size_t i = 0; i < g_keychain_count; i++)
        X509_free(g_keychain[i].x509);
    free(g_keychain);
    g_keychain = NULL;
    g_keychain_count = 0;
    pthread_mutex_unlock(&g_keychain_lock);
}

/* The keychain's certificates with one of the given settings, as a new
 * CFArray of SecCertificate (the caller owns it). */
static CFArrayRef keychain_copy(bool system_roots)
{
    CFMutableArrayRef out = CFArrayCreateMutable(NULL, 0, &kCFTypeArrayCallBacks);
    pthread_mutex_lock(&g_keychain_lock);
    for (size_t i = 0; i < g_keychain_count; i++) {
        bool is_root = g_keychain[i].setting == SETTING_SYSTEM_ROOT;
        if (is_root != system_roots)
            continue;
        cert_t *c = new_object(sizeof *c, T_CERT);
        X509_up_ref(g_keychain[i].x509);
        c->x509 = g_keychain[i].x509;
        CFArrayAppendValue(out, c);
        CFRelease(c); /* the array holds it */
    }
    pthread_mutex_unlock(&g_keychain_lock);
    return out;
}

/* SecTrustCopyAnchorCertificates: the system's anchors (setting 0 entries),
 * a new CFArray the caller releases. */
EXPORT OSStatus SecTrustCopyAnchorCertificates(CFArrayRef *anchors)
{
    if (!anchors)
        die("SecTrustCopyAnchorCertificates: NULL anchors");
    *anchors = keychain_copy(true);
    return 0;
}

/* SecTrustSettingsCopyCertificates: the certificates that have trust
 * settings in a domain (0 user, 1 admin, 2 system).  The stand-in keeps its
 * "Always Trust" / "Never Trust" entries in the user domain; the other
 * domains have none: errSecNoTrustSettings (-25263), as on macOS. */
EXPORT OSStatus SecTrustSettingsCopyCertificates(uint32_t domain, CFArrayRef *certArray)
{
    if (!certArray)
        die("SecTrustSettingsCopyCertificates: NULL certArray");
    if (domain > 2)
        return -50; /* errSecParam */
    if (domain != 0) {
        *certArray = NULL;
        return -25263;
    }
    CFArrayRef out = keychain_copy(false);
    if (CFArrayGetCount(out) == 0) {
        CFRelease(out);
        *certArray = NULL;
        return -25263;
    }
    *certArray = out;
    return 0;
}

/* Revocation information the stand-in's "network" can deliver: DER CRLs.
 * Returns 0, or -1 when der is not a CRL. */
EXPORT int standin_revocation_add_crl(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, len);
    if (!crl || p != der + len) {
        X509_CRL_free(crl);
        ERR_clear_error();
        return -1;
    }
    pthread_mutex_lock(&g_keychain_lock);
    X509_CRL **n = realloc(g_crls, (g_crl_count + 1) * sizeof *n);
    if (!n)
        die("out of memory");
    g_crls = n;
    g_crls[g_crl_count++] = crl;
    pthread_mutex_unlock(&g_keychain_lock);
    return 0;
}

EXPORT void standin_revocation_clear(void)
{
    pthread_mutex_lock(&g_keychain_lock);
    for (size_t i = 0; i < g_crl_count; i++)
        X509_CRL_free(g_crls[i]);
    free(g_crls);
    g_crls = NULL;
    g_crl_count = 0;
    pthread_mutex_unlock(&g_keychain_lock);
}

/* The "network" for AIA fetching: an HTTP GET of url returns body.  The URL is
 * compared byte for byte with the caIssuers URI.  Returns 0. */
EXPORT int standin_network_add(const char *url, const unsigned char *body, long len)
{
    if (!url || len < 0 || (len > 0 && !body))
        return -1;
    size_t url_len = strlen(url);
    pthread_mutex_lock(&g_keychain_lock);
    network_entry *n = realloc(g_network, (g_network_count + 1) * sizeof *n);
    if (!n)
        die("out of memory");
    g_network = n;
    network_entry *e = &g_network[g_network_count++];
    e->url = malloc(url_len + 1);
    e->body = malloc(len ? (size_t)len : 1);
    if (!e->url || !e->body)
        die("out of memory");
    memcpy(e->url, url, url_len + 1);
    e->url_len = url_len;
    if (len)
        memcpy(e->body, body, (size_t)len);
    e->body_len = len;
    pthread_mutex_unlock(&g_keychain_lock);
    return 0;
}

/* Forget the network's contents and any injected fault. */
EXPORT void standin_network_clear(void)
{
    pthread_mutex_lock(&g_keychain_lock);
    for (size_t i = 0; i < g_network_count; i++) {
        free(g_network[i].url);
        free(g_network[i].body);
    }
    free(g_network);
    g_network = NULL;
    g_network_count = 0;
    g_fetch_control_status = errSecSuccess;
    pthread_mutex_unlock(&g_keychain_lock);
}

/* AIA fetches attempted so far (one per caIssuers URL tried, found or not). */
EXPORT long standin_network_fetches(void)
{
    pthread_mutex_lock(&g_keychain_lock);
    long n = g_fetch_attempts;
    pthread_mutex_unlock(&g_keychain_lock);
    return n;
}

/* Make SecTrustSetNetworkFetchAllowed return status (and change nothing) until
 * standin_network_clear(); errSecSuccess restores normal behaviour. */
EXPORT void standin_fail_network_fetch_control(OSStatus status)
{
    pthread_mutex_lock(&g_keychain_lock);
    g_fetch_control_status = status;
    pthread_mutex_unlock(&g_keychain_lock);
}
