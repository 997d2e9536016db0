package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// pullRemote is the remote name the pulling repositories use.
const pullRemote = "bench"

// runPull times stock `ostree pull` of the published commit from our
// server against the same pull from nginx serving the same directory,
// each into a fresh archive repository, alternating.
func runPull(ctx context.Context, b *bench) error {
	if b.published == nil {
		// Run alone: publish the tree once (not timed).
		srcs, err := b.publishSources(ctx, false)
		if err != nil {
			return err
		}
		data, err := b.scratchDir("pull-source")
		if err != nil {
			return err
		}
		logf(b.stderr, "pull: publishing %s", srcs[0].path)
		commit, err := b.publishInProcess(ctx, data, srcs[0].path)
		if err != nil {
			return err
		}
		b.published = &publishedRepo{data: data, ref: benchRef, commit: commit, desc: srcs[0].desc}
	}
	pub := b.published
	repo := filepath.Join(pub.data, "repo")
	size, objects, err := diskUsage(filepath.Join(repo, "objects"))
	if err != nil {
		return err
	}
	ours, err := b.startOurs(ctx, pub.data, "pull")
	if err != nil {
		return err
	}
	peer, err := b.startNginx(ctx, repo, "pull")
	if err != nil {
		return err
	}
	var oursT, peerT, oursCPU, peerCPU, oursRSS, peerRSS, oursCli, peerCli []float64
	for round := range b.o.rounds {
		order := []*httpServer{ours, peer}
		if round%2 == 1 {
			order = []*httpServer{peer, ours}
		}
		for _, s := range order {
			if err := s.d.exited(); err != nil {
				return err
			}
			resetPeakRSS(s.d.cmd.Process.Pid)
			cpu0, err := groupCPU(s.d.cmd.Process.Pid)
			if err != nil {
				return err
			}
			res, err := b.timeOstreePull(ctx, s, pub, fmt.Sprintf("%s-%d", s.name, round))
			if err != nil {
				return err
			}
			cpu1, err := groupCPU(s.d.cmd.Process.Pid)
			if err != nil {
				return err
			}
			rss, err := groupPeakRSS(s.d.cmd.Process.Pid)
			if err != nil {
				return err
			}
			cpu := (cpu1 - cpu0).Seconds()
			logf(b.stderr, "pull: round %d/%d from %-11s %.2f s (server CPU %.2f s, peak RSS %.1f MB; ostree CPU %.2f s)",
				round+1, b.o.rounds, s.name, res.wall.Seconds(), cpu, float64(rss)/1e6, res.cpu.Seconds())
			if s == ours {
				oursT, oursCPU, oursRSS, oursCli = append(oursT, res.wall.Seconds()), append(oursCPU, cpu), append(oursRSS, float64(rss)/1e6), append(oursCli, res.cpu.Seconds())
			} else {
				peerT, peerCPU, peerRSS, peerCli = append(peerT, res.wall.Seconds()), append(peerCPU, cpu), append(peerRSS, float64(rss)/1e6), append(peerCli, res.cpu.Seconds())
			}
		}
	}
	name := fmt.Sprintf("pull (%d objects, %.0f MB)", objects, float64(size)/1e6)
	peerName := "ostree pull from nginx " + nginxVersion(b.report.Machine.Nginx)
	b.report.Rows = append(b.report.Rows,
		newRow("pull", name, "seconds", peerName, Lower, 1.0, oursT, peerT),
		newRow("pull", "pull: server CPU", "cpu-seconds", peerName, Lower, 1.5, oursCPU, peerCPU),
		newRow("pull", "pull: server peak RSS", "MB", peerName, Lower, 0, oursRSS, peerRSS),
		newRow("pull", "pull: ostree client CPU", "cpu-seconds", peerName, Lower, 0, oursCli, peerCli))
	b.report.Notes = append(b.report.Notes, fmt.Sprintf(
		"pull: `ostree pull` (%s) of commit %s (tree: %s) into a fresh archive repository, gpg-verify=false; every pull checked to end at that commit.",
		b.report.Machine.Ostree, pub.commit[:12], pub.desc))
	return errors.Join(stopServer(ours), stopServer(peer))
}

// timeOstreePull makes a fresh archive repository with a remote pointing
// at s (not timed), times the pull and checks the pulled ref.
func (b *bench) timeOstreePull(ctx context.Context, s *httpServer, pub *publishedRepo, label string) (runResult, error) {
	dest, err := b.scratchDir("pull", label)
	if err != nil {
		return runResult{}, err
	}
	env := childEnviron()
	repoArg := "--repo=" + dest
	if _, err := runTimed(ctx, b.o.timeout, env, b.o.ostree, repoArg, "init", "--mode=archive"); err != nil {
		return runResult{}, err
	}
	url := strings.TrimSuffix(s.base, "/")
	if _, err := runTimed(ctx, b.o.timeout, env, b.o.ostree, repoArg, "remote", "add",
		"--set=gpg-verify=false", "--set=gpg-verify-summary=false", pullRemote, url); err != nil {
		return runResult{}, err
	}
	syncFS()
	res, err := runTimed(ctx, b.o.timeout, env, b.o.ostree, repoArg, "pull", pullRemote, pub.ref)
	if err != nil {
		return res, fmt.Errorf("pull from %s: %w", s.name, err)
	}
	got, err := readRefFile(filepath.Join(dest, "refs", "remotes", pullRemote, pub.ref))
	if err != nil {
		return res, fmt.Errorf("pull from %s: %w", s.name, err)
	}
	if got != pub.commit {
		return res, fmt.Errorf("pull from %s: got commit %s, want %s", s.name, got, pub.commit)
	}
	if err := removeAll(dest, b.o.keep); err != nil {
		return res, err
	}
	syncFS()
	return res, nil
}
