//go:build tools

// The code generator, pinned by this go.mod: scripts/kitex-regen.sh builds it from here
// (Kitex >= 0.11 embeds thriftgo).
package main

import _ "github.com/cloudwego/kitex/tool/cmd/kitex"
