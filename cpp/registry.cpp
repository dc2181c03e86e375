// registry.cpp: the table of every op's implementation list, for _core.impl_name and
// _core.impl_list (the lists themselves live next to their drivers, cpp/<family>.cpp).
#include "registry.h"

#include <stdexcept>
#include <utility>

namespace rc {

const std::vector<OpImpls>& all_ops() {
    static const std::vector<OpImpls> all = [] {
        std::vector<OpImpls> rows;
        for (auto family : {conv_ops, conv_bf16_ops, batch_norm_ops, eltwise_ops, pool_ops,
                            linear_ops, loss_ops, optim_ops, augment_ops, probe_ops})
            for (OpImpls& row : family()) rows.push_back(std::move(row));
        return rows;
    }();
    return all;
}

const OpImpls& find_op(const std::string& op) {
    std::string known;
    for (const OpImpls& row : all_ops()) {
        if (row.op == op) return row;
        known += (known.empty() ? "'" : ", '") + row.op + "'";
    }
    throw std::invalid_argument("op: expected one of " + known + ", got '" + op + "'");
}

}  // namespace rc
