// pch.h: precompiled for every bindings file (pybind11 dominates their compile time).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
