// Command echo-webhook is a validating admission webhook for the node tests: it denies every
// request it is sent, naming the object, so a test can tell the API server really called it.
// It serves TLS with the certificate and key given on the command line (from a Secret volume).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
)

type review struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Request    *request       `json:"request,omitempty"`
	Response   map[string]any `json:"response,omitempty"`
}

type request struct {
	UID       string `json:"uid"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Kind      struct {
		Kind string `json:"kind"`
	} `json:"kind"`
}

func validate(w http.ResponseWriter, r *http.Request) {
	var in review
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Request == nil {
		http.Error(w, "expected an AdmissionReview", http.StatusBadRequest)
		return
	}
	message := fmt.Sprintf("echo-webhook denied %s %s/%s", in.Request.Kind.Kind, in.Request.Namespace, in.Request.Name)
	log.Print(message)
	out := review{
		APIVersion: "admission.k8s.io/v1",
		Kind:       "AdmissionReview",
		Response: map[string]any{
			"uid":     in.Request.UID,
			"allowed": false,
			"status":  map[string]any{"code": 403, "message": message},
		},
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func main() {
	addr := flag.String("listen", ":8443", "address to serve on")
	cert := flag.String("cert", "/tls/tls.crt", "serving certificate")
	key := flag.String("key", "/tls/tls.key", "serving key")
	flag.Parse()
	http.HandleFunc("/validate", validate)
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	log.Printf("serving on %s", *addr)
	log.Fatal(http.ListenAndServeTLS(*addr, *cert, *key, nil))
}
