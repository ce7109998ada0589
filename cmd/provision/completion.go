package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// provision has its own completion command, in place of cobra's default one, so that
// its help has examples like every other command's. The scripts are cobra's: they
// complete the subcommands and flags, and roster file names.
const completionLong = `Print a script that makes your shell complete provision's subcommands, flags and
file names. Supported shells: bash, zsh, fish and powershell.

bash needs the bash-completion package (Debian/Ubuntu: apt install bash-completion).`

const completionExample = `  # bash, for you alone (takes effect in new shells)
  mkdir -p ~/.local/share/bash-completion/completions
  provision completion bash > ~/.local/share/bash-completion/completions/provision

  # bash, for every user of the machine
  provision completion bash | sudo tee /etc/bash_completion.d/provision >/dev/null

  # zsh (with compinit enabled in ~/.zshrc)
  provision completion zsh > "${fpath[1]}/_provision"

  # fish
  provision completion fish > ~/.config/fish/completions/provision.fish

  # PowerShell, in the current session
  provision completion powershell | Out-String | Invoke-Expression`

func newCompletionCmd(io streams) *cobra.Command {
	var noDesc bool
	c := &cobra.Command{
		Use:       "completion bash|zsh|fish|powershell",
		Short:     "Print a shell completion script",
		Long:      completionLong,
		Example:   completionExample,
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usage(errors.New("name one shell: bash, zsh, fish or powershell"), "provision completion bash")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(io.stdout, !noDesc)
			case "zsh":
				if noDesc {
					return root.GenZshCompletionNoDesc(io.stdout)
				}
				return root.GenZshCompletion(io.stdout)
			case "fish":
				return root.GenFishCompletion(io.stdout, !noDesc)
			case "powershell":
				if noDesc {
					return root.GenPowerShellCompletion(io.stdout)
				}
				return root.GenPowerShellCompletionWithDesc(io.stdout)
			}
			return usage(fmt.Errorf("no completion for the shell %q", args[0]), "provision completion bash, zsh, fish or powershell")
		},
	}
	c.Flags().BoolVar(&noDesc, "no-descriptions", false, "complete without a description of each choice")
	return c
}
