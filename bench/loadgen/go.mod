module im-backend/bench/loadgen

go 1.19
