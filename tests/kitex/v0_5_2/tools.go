//go:build tools

// The code generators, pinned by this go.mod: scripts/kitex-regen.sh builds them from here.
package main

import (
	_ "github.com/cloudwego/kitex/tool/cmd/kitex"
	_ "github.com/cloudwego/thriftgo"
)
