package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Programs and files of the nginx mail proxy, from Debian packages.
const (
	NginxProgram    = "/usr/sbin/nginx"
	NginxMailModule = "/usr/lib/nginx/modules/ngx_mail_module.so"

	nginxPackage     = "nginx"
	nginxMailPackage = "libnginx-mod-mail"

	// NginxServerName is the mail server_name of every private nginx: it
	// greets clients with it and sends it in its own EHLO to the upstream,
	// before XCLIENT.
	NginxServerName = "proxy.tollgate.test"
	// NginxClientIP is the loopback address Nginx.Swaks connects from. nginx
	// itself reaches the upstream from 127.0.0.1, so the real client and
	// the proxy have different addresses, as they would in production.
	NginxClientIP = "127.0.0.2"
)

// NginxOptions configures a private nginx mail proxy.
type NginxOptions struct {
	// Upstream is the ip:port of the Postfix smtpd service that accepts
	// XCLIENT from 127.0.0.1 (smtpd_authorized_xclient_hosts), e.g.
	// Postfix.ServiceAddr["proxy"]. nginx takes no host names here.
	Upstream string
	// Users are the logins and passwords the auth_http endpoint accepts
	// for SMTP AUTH (PLAIN or LOGIN). Empty: only anonymous sessions.
	Users map[string]string
	// Listen is "" for 127.0.0.1 on a free port, a loopback IP for a free
	// port on it, or a loopback ip:port.
	Listen string
	// MailBlock, when set, is the text of a "mail { ... }" block (e.g. the
	// documented deploy/nginx/mail-proxy.conf) used instead of the
	// harness's own: its listen, auth_http and server_name are replaced by
	// the test's private ones, everything else is kept as written.
	MailBlock string
}

// Nginx is a running private nginx with the mail module: an SMTP proxy
// that authenticates with an in-process auth_http endpoint and hands each
// session to Upstream with XCLIENT ADDR=<client> [LOGIN=<user>]
// NAME=[UNAVAILABLE].
//
// nginx answers the client's EHLO itself (advertising only AUTH PLAIN
// LOGIN), asks auth_http after AUTH or, for anonymous sessions, after the
// first RCPT TO (it answers MAIL FROM with its own 250), then connects
// upstream and sends EHLO NginxServerName, XCLIENT, the client's EHLO and,
// for anonymous sessions, the MAIL FROM and RCPT TO it holds; from then on
// it relays bytes. Upstream replies during that replay reach the client
// (proxy_pass_error_message on): a milter's verdict on MAIL FROM shows at
// RCPT TO in anonymous sessions.
type Nginx struct {
	Addr string // ip:port clients connect to
	Dir  string // nginx.conf, error.log, nginx.pid
	// AuthRequests returns the headers of every auth_http request so far,
	// oldest first. Go canonicalizes the names: Auth-Method, Auth-User,
	// Auth-Pass (both percent-encoded by nginx), Auth-Protocol,
	// Auth-Login-Attempt, Client-Ip, Client-Host, Auth-Smtp-Helo,
	// Auth-Smtp-From, Auth-Smtp-To.
	AuthRequests func() []http.Header

	opts NginxOptions
}

// StartNginxMailProxy starts a private nginx mail proxy in front of
// opts.Upstream and waits until it listens. Neither the system's nginx
// service nor /etc/nginx is used. t.Cleanup stops it and its auth_http
// endpoint.
func StartNginxMailProxy(t testing.TB, opts NginxOptions) *Nginx {
	t.Helper()
	RequireProgram(t, NginxProgram, nginxPackage)
	requireFile(t, NginxMailModule, nginxMailPackage)
	upHost, upPort, err := net.SplitHostPort(opts.Upstream)
	if err != nil || net.ParseIP(upHost) == nil {
		t.Fatalf("e2e: NginxOptions.Upstream %q: want ip:port (nginx does not resolve names here)", opts.Upstream)
	}
	ip, fixedPort := parseListen(t, "NginxOptions.Listen", opts.Listen)

	auth := &nginxAuth{server: upHost, port: upPort, users: opts.Users}
	authSrv := httptest.NewServer(auth)
	t.Cleanup(authSrv.Close)

	dir := privateDir(t, "tollgate-e2e-nginx-")
	n := &Nginx{Dir: dir, AuthRequests: auth.requests, opts: opts}
	begin := time.Now()
	for attempt := 1; ; attempt++ {
		port := fixedPort
		if port == 0 {
			port = freePort(t, ip.String())
		}
		n.Addr = net.JoinHostPort(ip.String(), strconv.Itoa(port))
		n.writeConfig(t, strings.TrimPrefix(authSrv.URL, "http://"))
		logBefore := len(n.Log())
		err := n.start(t, ip, port)
		if err == nil {
			break
		}
		if fixedPort == 0 && attempt < 3 && strings.Contains(n.Log()[logBefore:], "Address already in use") {
			continue
		}
		t.Fatalf("e2e: starting nginx in %s: %v\nerror.log:\n%s", dir, err, n.Log())
	}
	t.Logf("nginx mail proxy %s -> %s started in %v (dir %s)", n.Addr, opts.Upstream,
		time.Since(begin).Round(time.Millisecond), dir)
	return n
}

func (n *Nginx) writeConfig(t testing.TB, authAddr string) {
	t.Helper()
	var userLine string
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody with the group of the
		// same name, which Debian does not have.
		uid, gid := lookupNobody(t)
		u, err1 := user.LookupId(strconv.Itoa(uid))
		g, err2 := user.LookupGroupId(strconv.Itoa(gid))
		if err1 != nil || err2 != nil {
			t.Fatalf("e2e: nginx workers: %v %v", err1, err2)
		}
		userLine = fmt.Sprintf("user %s %s;\n", u.Username, g.Name)
	}
	conf := fmt.Sprintf(`# Written by the tollgate e2e harness; the only file outside this directory is the module.
load_module %[1]s;
%[2]sdaemon off;
master_process on;
worker_processes 1;
pid %[3]s/nginx.pid;
error_log %[3]s/error.log info;

events {
	worker_connections 128;
}

mail {
	server_name %[4]s;
	auth_http %[5]s/auth;
	auth_http_timeout 10s;
	xclient on;
	proxy_pass_error_message on;
	proxy_timeout 60s;
	timeout 60s;

	server {
		listen %[6]s;
		protocol smtp;
		smtp_auth login plain none;
		proxy_smtp_auth off;
	}
}
`, NginxMailModule, userLine, n.Dir, NginxServerName, authAddr, n.Addr)
	if n.opts.MailBlock != "" {
		before, _, _ := strings.Cut(conf, "mail {")
		conf = before + n.mailBlock(authAddr)
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatalf("e2e: %v", err)
	}
}

var (
	nginxListen     = regexp.MustCompile(`(?m)^(\s*)listen\s+[^;]*;`)
	nginxAuthHTTP   = regexp.MustCompile(`(?m)^(\s*)auth_http\s+[^;]*;`)
	nginxServerName = regexp.MustCompile(`(?m)^(\s*)server_name\s+[^;]*;`)
	nginxMailOpen   = regexp.MustCompile(`(?m)^\s*mail\s*\{`)
)

// mailBlock is the caller's mail block with the addresses made private, and
// the error messages passed on so tests can read the upstream's replies.
func (n *Nginx) mailBlock(authAddr string) string {
	b := n.opts.MailBlock
	b = nginxListen.ReplaceAllString(b, "${1}listen "+n.Addr+";")
	b = nginxAuthHTTP.ReplaceAllString(b, "${1}auth_http "+authAddr+"/auth;")
	b = nginxServerName.ReplaceAllString(b, "${1}server_name "+NginxServerName+";")
	return nginxMailOpen.ReplaceAllString(b, "mail {\n\tproxy_pass_error_message on;")
}

// start runs nginx in the foreground (daemon off) in a process group of its
// own, so that a group kill also ends its workers.
func (n *Nginx) start(t testing.TB, ip net.IP, port int) error {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(n.Dir, "error.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	// -e: the compiled-in error log is stderr, but say so: nginx opens it
	// before it reads the configuration.
	cmd := exec.Command(NginxProgram, "-e", filepath.Join(n.Dir, "error.log"),
		"-p", n.Dir+"/", "-c", filepath.Join(n.Dir, "nginx.conf"))
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	// Not "kill -KILL -- -PGID": dash's kill rejects that form.
	wd := startWatchdog(t, `kill -s KILL -- "-$1" 2>/dev/null; rm -rf "$2"`, strconv.Itoa(pgid), n.Dir)
	stop := func() {
		// TERM is nginx's fast shutdown: the master ends its workers and
		// open sessions at once.
		// The master exits after its workers.
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeLimit):
			t.Errorf("e2e: nginx in %s did not stop within %v of SIGTERM", n.Dir, stopTimeLimit)
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		wd.disarm()
	}
	if err := waitListening(ip, port, exited); err != nil {
		stop()
		return err
	}
	t.Cleanup(stop)
	return nil
}

// Log returns nginx's error.log (level info: one line per proxied session
// and every auth_http or upstream failure).
func (n *Nginx) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "error.log"))
	return string(b)
}

// Swaks runs swaks against the proxy from NginxClientIP.
func (n *Nginx) Swaks(t testing.TB, args ...string) SwaksResult {
	t.Helper()
	return SwaksFrom(t, NginxClientIP, append([]string{"--server", n.Addr}, args...)...)
}

// SwaksFrom runs swaks with its source address set to localAddr, any
// loopback address (all of 127.0.0.0/8 is loopback on Linux), e.g. to make
// a client look different from a proxy on 127.0.0.1.
func SwaksFrom(t testing.TB, localAddr string, args ...string) SwaksResult {
	t.Helper()
	if strings.Contains(localAddr, ":") {
		requireFile(t, swaksIPv6Module, swaksIPv6Package)
	}
	return Swaks(t, append([]string{"--local-interface", localAddr}, args...)...)
}

// nginxAuth is the auth_http endpoint
// (https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html).
type nginxAuth struct {
	server, port string
	users        map[string]string

	mu   sync.Mutex
	seen []http.Header
}

func (a *nginxAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Clone())
	a.mu.Unlock()
	h := w.Header()
	ok := false
	switch method := r.Header.Get("Auth-Method"); method {
	case "none":
		ok = true
	default:
		// nginx percent-encodes the login and the password.
		user, err1 := url.PathUnescape(r.Header.Get("Auth-User"))
		pass, err2 := url.PathUnescape(r.Header.Get("Auth-Pass"))
		want, known := a.users[user]
		ok = err1 == nil && err2 == nil && known && pass == want
	}
	if ok {
		h.Set("Auth-Status", "OK")
		h.Set("Auth-Server", a.server)
		h.Set("Auth-Port", a.port)
	} else {
		h.Set("Auth-Status", "Invalid login or password")
		// Without Auth-Wait nginx closes the connection; with it the
		// client may try again.
		h.Set("Auth-Wait", "0")
	}
	w.WriteHeader(http.StatusOK)
}

func (a *nginxAuth) requests() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]http.Header, len(a.seen))
	for i, h := range a.seen {
		out[i] = h.Clone()
	}
	return out
}
