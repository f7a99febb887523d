module github.com/choleraehyq/pid

go 1.20
