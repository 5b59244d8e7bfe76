package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	cases := []struct {
		name    string
		cmdline string
		want    Config
		wantErr string
	}{
		{
			name:    "netboot script arguments",
			cmdline: `console=ttyS0 worker_id=CC:48:3A:00:00:01 hw_addr=cc:48:3a:00:00:01 grpc_authority=10.10.50.5:42113 syslog_host=10.10.50.5 tinkerbell_tls=false tinkerbell_insecure_tls=true kiln_metadata_url=http://10.10.50.5:7172 kiln_modules=virtio_net,e1000e initrd=initramfs`,
			want: Config{WorkerID: "cc:48:3a:00:00:01", HWAddr: "cc:48:3a:00:00:01", Authority: "10.10.50.5:42113", SyslogHost: "10.10.50.5",
				InsecureTLS: true, MetadataURL: "http://10.10.50.5:7172", Modules: []string{"virtio_net", "e1000e"}},
		},
		{name: "quoted", cmdline: `grpc_authority="10.0.0.1" hw_addr=aa:bb:cc:dd:ee:ff`, want: Config{Authority: "10.0.0.1", HWAddr: "aa:bb:cc:dd:ee:ff"}},
		{name: "bad bool", cmdline: "tinkerbell_tls=maybe", wantErr: "tinkerbell_tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCmdline(tc.cmdline)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	c := Config{HWAddr: "aa:bb:cc:dd:ee:ff", Authority: "10.0.0.1"}
	if err := c.Normalize(); err != nil || c.WorkerID != "aa:bb:cc:dd:ee:ff" || c.Authority != "10.0.0.1:42113" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []Config{{Authority: "x:1"}, {WorkerID: "a"}, {WorkerID: "a", Authority: "x:1", HWAddr: "nope"}} {
		if err := bad.Normalize(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestLoadModuleList(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if err := LoadModuleList(filepath.Join(t.TempDir(), "absent"), log); err != nil {
		t.Errorf("a missing list is not an error: %v", err)
	}
	list := filepath.Join(t.TempDir(), "modules")
	_ = os.WriteFile(list, []byte("# comment\n\nkernel/drivers/kn4/not-there.ko\n"), 0o600)
	if err := LoadModuleList(list, log); err == nil || !strings.Contains(err.Error(), "kernel/drivers/kn4/not-there.ko") {
		t.Errorf("missing module: %v", err)
	}
	if err := LoadModules([]string{"kn4_not_a_module"}, log); err == nil || !strings.Contains(err.Error(), "module kn4_not_a_module: not found") {
		t.Errorf("unknown module name: %v", err)
	}
}
