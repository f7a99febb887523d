// im-loadgen: an open-loop HTTP load generator, compiled, for the overload benchmark.
//
//	im-loadgen -url http://127.0.0.1:8080/api/send -rate 8000 -duration 30 -body '{"chat":...}'
//
// Request i is due at start + i/rate whatever happened before (open loop),
// and its latency runs from that due time, so a stall shows in every request
// it delays (no coordinated omission). Each request runs in its own
// goroutine on a keep-alive connection (opened when none is idle), so the
// generator never waits for the server before sending the next one.
//
// Why not bench/openloop.py: a Python generator costs tens of microseconds
// of CPU per request, so at twice the stack's capacity it would take a core
// of the two the stack runs on. Why not vegeta: its results give one
// latency distribution for every status, while the overload benchmark needs
// admitted and refused requests apart (and the Retry-After of each
// refusal), and its own CPU time; this is 300 lines of the standard library.
//
// Prints one JSON object: counts by outcome, latency percentiles of the 2xx
// and of the refusals (503 or 429), client timeouts, how late requests were
// dispatched, and the generator's own CPU time.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A request dispatched more than this after its due time counts as late.
const lateAfter = 5 * time.Millisecond

const (
	outcomeOK = iota + 1
	outcomeRefused
	outcomeOtherStatus
	outcomeTimeout
	outcomeError
)

type result struct {
	outcome    uint8
	retryAfter bool
	status     int32
	latency    time.Duration
	errKind    string
}

func main() {
	target := flag.String("url", "", "the URL to load (http://host:port/path?query)")
	rate := flag.Float64("rate", 0, "requests per second, offered")
	duration := flag.Float64("duration", 5, "seconds")
	body := flag.String("body", "", "JSON body: POST it (else GET)")
	timeout := flag.Float64("timeout", 5, "client timeout per request, seconds")
	procs := flag.Int("procs", 1, "OS threads running Go code (GOMAXPROCS): one spins less, costing the stack less CPU")
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	parsed, err := url.Parse(*target)
	if err != nil || parsed.Scheme != "http" || *rate <= 0 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "im-loadgen: -url (http://...), -rate and -duration are required (see -h)")
		os.Exit(2)
	}
	pool := &connections{address: parsed.Host, idle: make(chan *conn, 1<<20)}
	payload := request(parsed, *body)
	limit := time.Duration(*timeout * float64(time.Second))

	total := int(*rate * *duration)
	results := make([]result, total)
	lags := make([]time.Duration, total)
	var wg sync.WaitGroup
	interval := float64(time.Second) / *rate
	start := time.Now().Add(100 * time.Millisecond)
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		lags[i] = time.Since(due)
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			results[i] = pool.one(payload, due, limit)
		}(i, due)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var usage syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	cpu := time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
	out := summarize(results, lags, *rate, elapsed, cpu)
	out["connections_opened"] = atomic.LoadInt64(&pool.opened)
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
}

// request: the bytes of one request, the same for every one sent.
func request(target *url.URL, body string) []byte {
	path := target.RequestURI()
	if body == "" {
		return []byte("GET " + path + " HTTP/1.1\r\nHost: " + target.Host + "\r\n\r\n")
	}
	return []byte("POST " + path + " HTTP/1.1\r\nHost: " + target.Host +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// connections: keep-alive connections to one address, reused, opened on
// demand. Plain sockets and a minimal HTTP/1.1 reader rather than net/http,
// whose client costs several times the CPU per request (a goroutine pair
// per connection, a Request and a Header map per request): CPU this
// generator takes is CPU the stack under test does not get.
type connections struct {
	address string
	idle    chan *conn
	opened  int64
}

type conn struct {
	net.Conn
	reader *bufio.Reader
}

func (p *connections) one(payload []byte, due time.Time, limit time.Duration) result {
	var c *conn
	select {
	case c = <-p.idle:
	default:
		raw, err := net.DialTimeout("tcp", p.address, limit)
		if err != nil {
			return failure(err)
		}
		atomic.AddInt64(&p.opened, 1)
		c = &conn{raw, bufio.NewReaderSize(raw, 4096)}
	}
	_ = c.SetDeadline(time.Now().Add(limit))
	if _, err := c.Write(payload); err != nil {
		c.Close()
		return failure(err)
	}
	status, retryAfter, keep, err := readResponse(c.reader)
	if err != nil {
		c.Close()
		return failure(err)
	}
	r := result{status: int32(status), latency: time.Since(due)}
	if keep {
		p.idle <- c
	} else {
		c.Close()
	}
	switch {
	case status >= 200 && status < 300:
		r.outcome = outcomeOK
	case status == 503 || status == 429:
		r.outcome = outcomeRefused
		r.retryAfter = retryAfter
	default:
		r.outcome = outcomeOtherStatus
	}
	return r
}

// readResponse reads one response whose body has a Content-Length (as every
// answer of the API but an event stream), and discards the body.
func readResponse(r *bufio.Reader) (status int, retryAfter, keep bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, false, false, err
	}
	fields := bytes.Fields(line)
	if len(fields) < 2 {
		return 0, false, false, errMalformed
	}
	if status, err = strconv.Atoi(string(fields[1])); err != nil {
		return 0, false, false, errMalformed
	}
	length, keep := -1, true
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, false, false, err
		}
		header := bytes.TrimRight(line, "\r\n")
		if len(header) == 0 {
			break
		}
		name, value, found := bytes.Cut(header, []byte(":"))
		if !found {
			return 0, false, false, errMalformed
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, false, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Retry-After")):
			retryAfter = true
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false, false, errMalformed // not sent by the routes loaded here
		}
	}
	if length < 0 {
		return 0, false, false, errMalformed
	}
	_, err = r.Discard(length)
	return status, retryAfter, keep, err
}

var errMalformed = errors.New("malformed response")

func failure(err error) result {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return result{outcome: outcomeTimeout}
	}
	return result{outcome: outcomeError, errKind: errorKind(err)}
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.Is(err, errMalformed):
		return "malformed response"
	}
	return "other"
}

func summarize(results []result, lags []time.Duration, rate float64, elapsed, cpu time.Duration) map[string]any {
	var ok, refused, all []time.Duration
	counts := map[string]int{}
	statuses := map[string]int{}
	noRetryAfter := 0
	for _, r := range results {
		switch r.outcome {
		case outcomeOK:
			ok = append(ok, r.latency)
			all = append(all, r.latency)
		case outcomeRefused:
			refused = append(refused, r.latency)
			all = append(all, r.latency)
			statuses[strconv.Itoa(int(r.status))]++
			if !r.retryAfter {
				noRetryAfter++
			}
		case outcomeOtherStatus:
			all = append(all, r.latency)
			statuses[strconv.Itoa(int(r.status))]++
		case outcomeTimeout:
			counts["timeouts"]++
		case outcomeError:
			counts["error: "+r.errKind]++
		}
	}
	late := 0
	var maxLag time.Duration
	for _, lag := range lags {
		if lag > lateAfter {
			late++
		}
		if lag > maxLag {
			maxLag = lag
		}
	}
	errorsByKind := map[string]int{}
	for kind, n := range counts {
		if kind != "timeouts" {
			errorsByKind[strings.TrimPrefix(kind, "error: ")] = n
		}
	}
	seconds := elapsed.Seconds()
	return map[string]any{
		"offered_rate":                rate,
		"requests":                    len(results),
		"elapsed_s":                   round(seconds, 3),
		"ok":                          len(ok),
		"refused":                     len(refused),
		"refused_without_retry_after": noRetryAfter,
		"statuses":                    statuses,
		"timeouts":                    counts["timeouts"],
		"errors":                      errorsByKind,
		"goodput_per_s":               round(float64(len(ok))/seconds, 1),
		"ok_p50_ms":                   ms(percentile(ok, 50)),
		"ok_p99_ms":                   ms(percentile(ok, 99)),
		"ok_max_ms":                   ms(percentile(ok, 100)),
		"refused_p50_ms":              ms(percentile(refused, 50)),
		"refused_p99_ms":              ms(percentile(refused, 99)),
		"refused_max_ms":              ms(percentile(refused, 100)),
		"p99_ms":                      ms(percentile(all, 99)),
		"dispatched_late":             late,
		"max_dispatch_lag_ms":         ms(maxLag),
		"behind_schedule":             late > len(results)/100,
		"cpu_s":                       round(cpu.Seconds(), 3),
	}
}

// percentile: the nearest-rank percentile (as bench/stats.py); -1 for none.
func percentile(values []time.Duration, p float64) time.Duration {
	if len(values) == 0 {
		return -1
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	rank := int(float64(len(values))*p/100 + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(values) {
		rank = len(values)
	}
	return values[rank-1]
}

func ms(d time.Duration) any {
	if d < 0 {
		return nil
	}
	return round(float64(d)/float64(time.Millisecond), 3)
}

func round(x float64, places int) float64 {
	scale := 1.0
	for i := 0; i < places; i++ {
		scale *= 10
	}
	return float64(int64(x*scale+0.5)) / scale
}
