package filters_test

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// hostWASI is the WASI preview1 subset Envoy's proxy-wasm host provides
// (the rest of WASI is absent, and a module importing it fails to load).
var hostWASI = []string{
	"args_get", "args_sizes_get", "clock_res_get", "clock_time_get", "environ_get",
	"environ_sizes_get", "fd_advise", "fd_allocate", "fd_close", "fd_datasync",
	"fd_fdstat_get", "fd_fdstat_set_flags", "fd_fdstat_set_rights", "fd_filestat_get",
	"fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_prestat_dir_name",
	"fd_prestat_get", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek",
	"fd_sync", "fd_tell", "fd_write", "path_create_directory", "path_filestat_get",
	"path_filestat_set_times", "path_link", "path_open", "path_readlink",
	"path_remove_directory", "path_rename", "path_symlink", "path_unlink_file",
	"poll_oneoff", "proc_exit", "random_get", "sched_yield", "sock_accept", "sock_recv",
	"sock_send", "sock_shutdown",
}

// hostProxy is every env.proxy_* function Envoy's host provides to a
// proxy-wasm 0.2.1 module.
var hostProxy = []string{
	"log", "get_status", "set_property", "get_property", "send_local_response",
	"get_shared_data", "set_shared_data", "register_shared_queue", "resolve_shared_queue",
	"dequeue_shared_queue", "enqueue_shared_queue", "get_header_map_value",
	"add_header_map_value", "replace_header_map_value", "remove_header_map_value",
	"get_header_map_pairs", "set_header_map_pairs", "get_header_map_size",
	"get_buffer_status", "get_buffer_bytes", "set_buffer_bytes", "http_call", "grpc_call",
	"grpc_stream", "grpc_close", "grpc_cancel", "grpc_send", "set_tick_period_milliseconds",
	"get_current_time_nanoseconds", "define_metric", "increment_metric", "record_metric",
	"get_metric", "set_effective_context", "done", "call_foreign_function",
	"continue_stream", "close_stream", "get_log_level",
}

// requiredExports are what a proxy needs to load the module as a reactor
// speaking proxy-wasm ABI 0.2.0, the version the SDK declares (the SDK
// exports the callbacks; the real Envoy tests show they are the right ones).
var requiredExports = []string{"_initialize", "memory", "proxy_abi_version_0_2_0"}

// TestModulesImportOnlyWhatEnvoyProvides guards against a dependency
// quietly pulling a WASI call the proxy lacks into a filter.
func TestModulesImportOnlyWhatEnvoyProvides(t *testing.T) {
	for _, name := range filterNames {
		data, err := os.ReadFile(modulePath(name))
		if err != nil {
			t.Fatal(err)
		}
		mod, err := parseWasm(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, imp := range mod.Imports {
			module, fn, _ := strings.Cut(imp, ".")
			ok := (module == "env" && slices.Contains(hostProxy, strings.TrimPrefix(fn, "proxy_"))) ||
				(module == "wasi_snapshot_preview1" && slices.Contains(hostWASI, fn))
			if !ok {
				t.Errorf("%s imports %s, which the proxy does not provide", name, imp)
			}
		}
		for _, exp := range requiredExports {
			if !slices.Contains(mod.Exports, exp) {
				t.Errorf("%s does not export %s", name, exp)
			}
		}
		t.Logf("%s: %d bytes; imports %s", name, len(data), strings.Join(mod.Imports, " "))
	}
}
