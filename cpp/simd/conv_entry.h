// conv_entry.h: the public convolution entry points of one SIMD translation unit, over its
// `struct Micro` and the shared drivers (conv_kernels.h, winograd.h). Included once, at the
// end of conv_avx2.cpp and conv_avx512.cpp, each of which defines RC_CONV_ISA (avx2, avx512).
#ifndef RC_CONV_ISA
#error "define RC_CONV_ISA (the namespace under rc::) before including conv_entry.h"
#endif

namespace rc::RC_CONV_ISA {

void conv2d_forward(const float* x, const float* w, const float* b, float* y, const ConvShape& s) {
    forward<Micro>(x, w, b, y, s);
}
void conv2d_backward_data(const float* dy, const float* w, float* dx, const ConvShape& s) {
    backward_data<Micro>(dy, w, dx, s);
}
void conv2d_backward_weight(const float* x, const float* dy, float* dw, float* db,
                            const ConvShape& s) {
    backward_weight<Micro>(x, dy, dw, db, s);
}
void conv2d_winograd_forward(int m, const float* x, const float* w, const float* b, float* y,
                             const ConvShape& s) {
    (m == 4 ? winograd_forward<4, Micro> : winograd_forward<2, Micro>)(x, w, b, y, s);
}
void conv2d_winograd_backward_data(int m, const float* dy, const float* w, float* dx,
                                   const ConvShape& s) {
    (m == 4 ? winograd_backward_data<4, Micro> : winograd_backward_data<2, Micro>)(dy, w, dx, s);
}
void conv2d_winograd_backward_weight(int m, const float* x, const float* dy, float* dw, float* db,
                                     const ConvShape& s) {
    (m == 4 ? winograd_backward_weight<4, Micro> : winograd_backward_weight<2, Micro>)(x, dy, dw,
                                                                                      db, s);
}

}  // namespace rc::RC_CONV_ISA
