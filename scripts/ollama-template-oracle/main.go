// Command ollama-template-oracle renders Go chat templates with Ollama's own
// `template` package and prints the results as JSON lines. The output is the
// reference ("expected") data for the Rust reimplementation in
// crates/go-template; see README.md.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/template"
)

// conversation is one entry of the -conversations file.
type conversation struct {
	Name       string          `json:"name"`
	Messages   json.RawMessage `json:"messages"`
	Tools      *string         `json:"tools"`
	Prompt     string          `json:"prompt"`
	Suffix     string          `json:"suffix"`
	Think      bool            `json:"think"`
	IsThinkSet bool            `json:"is_think_set"`
	ThinkLevel *string         `json:"think_level"`
}

// result is one line of output. Exactly one of Output and Error is set.
type result struct {
	Template string  `json:"template"`
	Case     string  `json:"case"`
	Output   *string `json:"output,omitempty"`
	Error    *string `json:"error,omitempty"`
}

type tmplFile struct {
	stem string
	text string
}

func main() {
	templatesDir := flag.String("templates", "", "folder of *.gotmpl files")
	conversationsPath := flag.String("conversations", "", "JSON array of conversations")
	toolsPath := flag.String("tools", "", "JSON object: name -> array of tools (optional)")
	flag.Parse()
	if *templatesDir == "" || *conversationsPath == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: ollama-template-oracle -templates DIR -conversations FILE [-tools FILE]")
		os.Exit(2)
	}
	if err := run(*templatesDir, *conversationsPath, *toolsPath); err != nil {
		fmt.Fprintln(os.Stderr, "ollama-template-oracle:", err)
		os.Exit(1)
	}
}

func run(templatesDir, conversationsPath, toolsPath string) error {
	templates, err := readTemplates(templatesDir)
	if err != nil {
		return err
	}
	convs, err := readConversations(conversationsPath)
	if err != nil {
		return err
	}
	toolSets := map[string]json.RawMessage{}
	if toolsPath != "" {
		if err := readJSON(toolsPath, &toolSets); err != nil {
			return err
		}
	}

	// Decode every case up front, so that a bad input file fails the whole
	// run instead of producing error lines.
	for _, c := range convs {
		if _, err := buildValues(c, toolSets); err != nil {
			return fmt.Errorf("conversation %q: %w", c.Name, err)
		}
	}

	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	for _, t := range templates {
		for _, c := range convs {
			r := result{Template: t.stem, Case: c.Name}
			// Decode the values and parse the template afresh for every
			// render: Template.Execute merges consecutive same-role messages
			// in place (it modifies the Content of the caller's Messages), so
			// reusing the values would leak state from one render into the next.
			v, err := buildValues(c, toolSets)
			if err != nil {
				return err
			}
			text, err := render(t.text, v)
			if err != nil {
				msg := err.Error()
				r.Error = &msg
			} else {
				r.Output = &text
			}
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func render(text string, v template.Values) (string, error) {
	tmpl, err := template.Parse(text)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, v); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func buildValues(c conversation, toolSets map[string]json.RawMessage) (template.Values, error) {
	var v template.Values
	if len(c.Messages) > 0 && string(c.Messages) != "null" {
		var msgs []api.Message
		if err := json.Unmarshal(c.Messages, &msgs); err != nil {
			return v, fmt.Errorf("messages: %w", err)
		}
		v.Messages = msgs
	}
	if c.Tools != nil {
		raw, ok := toolSets[*c.Tools]
		if !ok {
			return v, fmt.Errorf("tools %q not found in the tools file", *c.Tools)
		}
		var tools api.Tools
		if err := json.Unmarshal(raw, &tools); err != nil {
			return v, fmt.Errorf("tools %q: %w", *c.Tools, err)
		}
		v.Tools = tools
	}
	v.Prompt = c.Prompt
	v.Suffix = c.Suffix
	v.Think = c.Think
	v.IsThinkSet = c.IsThinkSet
	if c.ThinkLevel != nil {
		v.ThinkLevel = *c.ThinkLevel
	}
	return v, nil
}

func readTemplates(dir string) ([]tmplFile, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.gotmpl"))
	if err != nil {
		return nil, err
	}
	var files []tmplFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		stem := strings.TrimSuffix(filepath.Base(p), ".gotmpl")
		text := strings.ReplaceAll(string(b), "\r\n", "\n")
		files = append(files, tmplFile{stem: stem, text: text})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].stem < files[j].stem })
	return files, nil
}

func readConversations(path string) ([]conversation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	convs := make([]conversation, 0, len(raws))
	seen := map[string]bool{}
	for i, raw := range raws {
		var c conversation
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields() // catch typos in field names
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%s: conversation #%d: %w", path, i, err)
		}
		if c.Name == "" {
			return nil, fmt.Errorf("%s: conversation #%d has no name", path, i)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s: duplicate conversation name %q", path, c.Name)
		}
		seen[c.Name] = true
		convs = append(convs, c)
	}
	return convs, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
