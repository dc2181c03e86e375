// vec_scalar.h: the one-lane "vector" primitives the shared bodies (batchnorm_body.h,
// eltwise_body.h) are written against. Include inside rc::scalar's anonymous namespace.
// Needs <cstdint> and <cstring>.
constexpr int64_t VL = 1;
using V = float;

inline V vzero() { return 0.0f; }
inline V vload(const float* p) { return *p; }
inline void vstore(float* p, V v) { *p = v; }
inline V vloadn(const float* p, int64_t n) { return n > 0 ? *p : 0.0f; }
inline void vstoren(float* p, V v, int64_t n) {
    if (n > 0) *p = v;
}
inline V vadd(V a, V b) { return a + b; }
inline V vsub(V a, V b) { return a - b; }
inline V vmul(V a, V b) { return a * b; }
inline V vfma(V a, V b, V c) { return a * b + c; }
// Branch-free selects (random signs would mispredict a branch half the time), giving +0
// for masked lanes exactly like the AVX paths.
inline V keep_if(bool keep, V v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    b &= 0u - (uint32_t)keep;
    std::memcpy(&v, &b, 4);
    return v;
}
inline V vrelu(V v) { return keep_if(!(v <= 0.0f), v); }  // NaN passes through, as in PyTorch
inline V vmask_pos(V v, V y) { return keep_if(y > 0.0f, v); }
