package i18n

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Localize translates the help: every command's Short, every flag's usage
// and cobra's usage template headings; call it once the command tree is
// built.
func Localize(root *cobra.Command, p *Printer) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		if c == root {
			c.InitDefaultVersionFlag()
			c.InitDefaultHelpCmd()
		}
		c.Short = p.Text(c.Short)
		if f := c.Flags().Lookup("help"); f != nil {
			f.Usage = p.T("help for %s", c.Name())
		}
		if f := c.Flags().Lookup("version"); f != nil {
			f.Usage = p.T("version for %s", c.Name())
		}
		c.Flags().VisitAll(func(f *pflag.Flag) { f.Usage = p.Text(f.Usage) })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { f.Usage = p.Text(f.Usage) })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	root.SetUsageTemplate(UsageTemplate(p, root.UsageTemplate()))
	root.SetVersionTemplate(p.Text("{{.Name}} version {{.Version}}") + "\n")
}
