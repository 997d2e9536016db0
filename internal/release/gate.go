package release

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
)

// Release gates: who may put a release on which channel, and how. Gate is
// pure (channel definitions and the caller only); Service (service.go)
// adds the checks that need stored state and is what the server's
// release handler calls, so every rule lives here and nowhere else.
//
// Decisions:
//   - A channel with promotes_from (stable, edu) accepts promotions only:
//     a direct publish is refused for every caller, even one listed in
//     the channel's publishers, with a message naming the source channel
//     and the promote command. A channel without promotes_from (testing)
//     accepts publishes only.
//   - The checks run in this order, so a refusal names the first rule
//     broken: the role's permission (internal/auth), the channel's mode
//     (promotion-only or publish-only), the channel's publishers list
//     (a role, or token:<name>), then the promotion source.
//   - mxosctl refuses a publish to a promotion-only channel before it
//     builds or uploads anything (it reads promotes_from from the server's
//     channel list), and a local `mxosctl publish --ref` refuses a ref that
//     belongs to a promotion-only channel in the channel definitions it
//     finds (--channels, MXOS_CHANNELS or ./channels, as mxos-server).

// Action is what a release request does to its channel.
type Action string

// Actions.
const (
	ActionPublish Action = "publish"
	ActionPromote Action = "promote"
)

// Caller is who asks: the token's role and its name.
type Caller struct {
	Role  auth.Role
	Token string
}

// Errors of Gate, wrapped with detail.
var (
	// ErrForbidden: the caller's role or token may not do this.
	ErrForbidden = errors.New("not allowed")
	// ErrPromotionOnly: a publish to a channel reached only by promotion;
	// such errors also match channel.ErrPromotion.
	ErrPromotionOnly = errors.New("channel accepts promotions only")
)

// Gate decides whether caller may do action on channel `to`; from is the
// promotion source (empty for a publish). The error wraps ErrForbidden,
// ErrPromotionOnly, channel.ErrPromotion or channel.ErrUnknownChannel.
func Gate(set *channel.Set, to string, action Action, from string, caller Caller) error {
	ch, err := set.Get(to)
	if err != nil {
		return err
	}
	perm := auth.PermPublish
	switch action {
	case ActionPublish:
		if from != "" {
			return fmt.Errorf("%w: a publish has no source channel", channel.ErrPromotion)
		}
	case ActionPromote:
		perm = auth.PermPromote
	default:
		return refusal(fmt.Sprintf("unknown action %q", action), ErrForbidden)
	}
	if !auth.Allowed(caller.Role, perm) {
		return refusal(fmt.Sprintf("the %s role cannot %s", roleName(caller.Role), action), ErrForbidden)
	}
	if action == ActionPublish && ch.PromotesFrom != "" {
		return PromotionOnlyError(ch.Name, ch.PromotesFrom)
	}
	if !ch.AllowsPublisher(string(caller.Role), caller.Token) {
		who := "token " + caller.Token
		if caller.Token == "" {
			who = "this token"
		}
		return refusal(fmt.Sprintf("%s may not %s into %s (its publishers: %s)", who, action, ch.Name, strings.Join(ch.Publishers, ", ")), ErrForbidden)
	}
	if action == ActionPromote {
		return set.CanPromote(from, to)
	}
	return nil
}

// PromotionOnlyError is the refusal of a publish to channel name, which
// releases reach only from source; mxosctl uses it too, so the message is
// the same wherever the publish is refused.
func PromotionOnlyError(name, source string) error {
	return refusal(fmt.Sprintf("%s accepts promotions only: releases reach it from %s (publish to %s, then mxosctl promote --from %s --to %s --version VERSION)",
		name, source, source, source, name), ErrPromotionOnly, channel.ErrPromotion)
}

// gateError is a refusal whose message is for people and whose kinds are
// for errors.Is.
type gateError struct {
	msg   string
	kinds []error
}

func refusal(msg string, kinds ...error) error { return &gateError{msg, kinds} }

func (e *gateError) Error() string   { return e.msg }
func (e *gateError) Unwrap() []error { return e.kinds }

func roleName(r auth.Role) string {
	if r == "" {
		return "(no)"
	}
	return string(r)
}
