//! TCG PC Client crypto-agile event logs: parse and replay against quoted PCRs. (being written)
